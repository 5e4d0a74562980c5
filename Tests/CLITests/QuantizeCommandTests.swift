import Foundation
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// `pdrop quantize` on the tiny LLaVA: the checkpoint it writes loads in `logits` and `generate`,
/// which agree with transformers running the same model with its matrices through llama.cpp's
/// Q8_0 and back (tools/reference/make_q8_0_fixtures.py); a broken Q8_0 checkpoint is named.
@Suite struct QuantizeCommandTests {
    let model = Fixtures.url("tiny-llava").path
    let image = Fixtures.url("images/chelsea.jpg").path
    let question = "What is shown in this image?"

    func quantized() throws -> URL {
        let output = try makeTemporaryDirectory("quantize").appendingPathComponent("q8_0")
        let run = try runPDrop(["quantize", "--model", model, "--output", output.path])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("77 matrices"), "\(run.stdout)")
        return output
    }

    @Test func quantizedModelMatchesTransformersOnTheSameValues() throws {
        let output = try quantized()
        let reference = try SafeTensorsFile(path: Fixtures.url("q8_0/tiny-llava-q8_0-reference.safetensors").path)
        let logitsRun = try runPDrop(["logits", "--model", output.path, "--image", image, "--prompt", question, "--reduction", "none"])
        #expect(logitsRun.status == 0, "\(logitsRun.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(logitsRun.stdout.utf8)) as? [String: Any])
        let logits = try #require(object["lastLogits"] as? [Double]).map(Float.init)
        let expected = try reference.floatTensor("logits.last")
        #expect(logits.count == expected.count)
        #expect(maxAbsoluteDifference(Tensor(shape: [1, logits.count], values: logits), expected) < 1e-4)
        let generateRun = try runPDrop(["generate", "--model", output.path, "--image", image, "--prompt", question,
                                        "--max-new-tokens", "16", "--ignore-eos", "--json", "--reduction", "none"])
        let generated = try JSONSerialization.jsonObject(with: Data(generateRun.stdout.utf8)) as? [String: Any]
        #expect(generated?["tokens"] as? [Int] == (try reference.integers("greedy_tokens")))
        let config = try String(contentsOf: output.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(config.contains("\"quant_method\": \"q8_0\""))
        let again = try runPDrop(["quantize", "--model", output.path, "--output", output.path + "-again"])
        #expect(again.status != 0 && again.stderr.contains("already quantized"), "\(again.stderr)")
    }

    @Test func missingScalesAreNamed() throws {
        let output = try quantized()
        let weights = output.appendingPathComponent("model.safetensors")
        let file = try SafeTensorsFile(path: weights.path)
        let dropped = "multi_modal_projector.linear_1.weight_scale"
        #expect(file.tensorNames.contains(dropped))
        let items = try file.tensorNames.filter { $0 != dropped }.map { name in
            SafeTensorsWriter.Item(name: name, dtype: file.entries[name]!.dtype, shape: file.entries[name]!.shape, bytes: Data(try file.rawBytes(name)))
        }
        try SafeTensorsWriter.write(items, to: weights)
        let run = try runPDrop(["logits", "--model", output.path, "--image", image, "--prompt", question])
        #expect(run.status != 0)
        #expect(run.stderr.contains("multi_modal_projector.linear_1.weight") && run.stderr.contains(dropped), "\(run.stderr)")
    }
}
