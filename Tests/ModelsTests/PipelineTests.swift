import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction
import Vision

/// The whole LLaVA-1.5 path from files, as a user runs it: the JPEG through our decoder and
/// CLIPImageProcessor, the prompt through tokenizer.json, the model, greedy decoding; against
/// transformers' LlavaProcessor + LlavaForConditionalGeneration (make_llava_fixtures.py).
@Suite struct PipelineTests {
    static let pipeline = Result { try InferenceSession(directory: Fixtures.url("tiny-llava")) }
    static let reference = Result { try SafeTensorsFile(path: Fixtures.url("tiny-llava/reference-image.safetensors").path) }
    let image = Fixtures.url("images/chelsea.jpg")

    @Test func pixelValuesInputIdsLogitsAndTokensMatchTransformers() throws {
        let pipeline = try Self.pipeline.get()
        let reference = try Self.reference.get()
        let pixels = try pipeline.pixelValues(imageFile: image)
        let pixelDifference = maxAbsoluteDifference(pixels, try reference.floatTensor("pixel_values"))
        #expect(pixelDifference < 1e-3)

        let prompt = try pipeline.prepare(prompt: ConversationTemplate.llava15.prompt(question: "What is shown in this image?"), imageFiles: [image])
        #expect(prompt.inputIds == (try reference.integers("input_ids")))
        #expect(prompt.imageTokens == 576 && prompt.imageBlocks == [5..<581])

        let result = try pipeline.generate(prompt, reducer: NoReduction(), maxNewTokens: 16, stopAtEndOfSequence: false)
        let logitDifference = maxAbsoluteDifference(
            Tensor(shape: [1, result.lastPromptLogits.count], values: result.lastPromptLogits), try reference.floatTensor("logits.last"))
        #expect(logitDifference < 1e-4)
        #expect(result.tokens == (try reference.integers("greedy_tokens")))
        print("pipeline: pixel_values max difference \(pixelDifference), last logits \(logitDifference)")
    }

    @Test func promptsWithoutOrWithTooManyImagesAreErrors() throws {
        let pipeline = try Self.pipeline.get()
        #expect(throws: PipelineError.promptWithoutImage(prompt: "USER: hello ASSISTANT:")) {
            try pipeline.tokenize("USER: hello ASSISTANT:", imageTokenCounts: [576])
        }
        #expect(throws: PipelineError.promptWithSeveralImages(count: 2, images: 1)) {
            try pipeline.tokenize("USER: <image> and <image> ASSISTANT:", imageTokenCounts: [576])
        }
        let long = "USER: <image>\n" + String(repeating: "tell me more ", count: 1500) + "ASSISTANT:"
        do {
            _ = try pipeline.tokenize(long, imageTokenCounts: [576])
            Issue.record("a prompt past the context should fail")
        } catch let error as PipelineError {
            guard case let .promptTooLong(tokens, imageTokens, context) = error else { Issue.record("\(error)"); return }
            #expect(tokens > context && imageTokens == 576 && context == 4096)
        }
    }

    @Test func badImagesAreClearErrors() throws {
        let pipeline = try Self.pipeline.get()
        let bad = Fixtures.url("vision/images/bad")
        // missing_end_marker.jpg decodes in PIL too (all its scanlines are present).
        for name in try FileManager.default.contentsOfDirectory(atPath: bad.path).sorted() where name != "missing_end_marker.jpg" {
            do {
                _ = try pipeline.pixelValues(imageFile: bad.appendingPathComponent(name))
                Issue.record("\(name) should be refused")
            } catch {
                #expect("\(error)".contains(name), "the error names the file: \(error)")
            }
        }
        #expect(throws: (any Error).self) { try pipeline.pixelValues(imageFile: URL(fileURLWithPath: "/nonexistent.jpg")) }
    }

    @Test func textOnlyCheckpointIsRefusedForImages() throws {
        #expect(throws: PipelineError.notAVisionLanguageModel(directory: Fixtures.url("tiny-llama").path)) {
            try InferenceSession(directory: Fixtures.url("tiny-llama")).imageInput(imageFile: image)
        }
    }

    /// The kept-token picture has one panel per stage, and dropped patches are darker.
    @Test func keptPictureDimsDroppedPatches() throws {
        let pipeline = try Self.pipeline.get()
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let kept = [[Array(0..<288)], [Array(0..<144)]]  // top half, then top quarter
        let path = directory.appendingPathComponent("kept.png").path
        try pipeline.saveKeptPicture(imageFiles: [image], keptImageTokens: kept, to: path)
        let picture = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: path))
        #expect(picture.width == 3 * 336 + 2 * 6 && picture.height == 336)
        func brightness(panel: Int, y: Int) -> Int {
            let x = panel * (336 + 6) + 168
            return (0..<3).reduce(0) { $0 + Int(picture.pixels[(y * picture.width + x) * 3 + $1]) }
        }
        // Bottom rows: bright in the first panel, dimmed after the first drop.
        #expect(brightness(panel: 1, y: 300) * 3 < brightness(panel: 0, y: 300))
        #expect(brightness(panel: 1, y: 20) == brightness(panel: 0, y: 20))
        #expect(brightness(panel: 2, y: 120) * 3 < brightness(panel: 0, y: 120))
    }
}
