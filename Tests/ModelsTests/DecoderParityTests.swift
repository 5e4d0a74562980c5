import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// The decoder against what transformers computed on the same tiny random checkpoints
/// (tools/reference/make_fixtures.py).
@Suite struct DecoderParityTests {
    static let fixtures = ["tiny-llama", "tiny-llama-sharded", "tiny-llava", "tiny-llava-saved", "tiny-qwen2"]

    /// Largest |ours - reference| relative to the reference's scale (max(1, max |reference|)).
    func scaledDifference(_ ours: Tensor, _ reference: Tensor) -> Float {
        let scale = max(1, reference.buffer.map(abs).max() ?? 0)
        return maxAbsoluteDifference(ours, reference) / scale
    }

    @Test(arguments: fixtures)
    func everyLayerAndTheLogitsMatchTransformers(_ name: String) throws {
        let loaded = try LoadedModel.load(directory: Fixtures.url(name))
        let reference = try SafeTensorsFile(path: Fixtures.url(name).appendingPathComponent("reference.safetensors").path)
        let model = loaded.languageModel
        let inputIds = try reference.integers("input_ids")
        let tokens = inputIds.count

        let hidden = try model.embed(inputIds)
        #expect(maxAbsoluteDifference(hidden, try reference.floatTensor("hidden.embeddings")) == 0)
        var layerDifferences: [Float] = []
        let cache = model.makeCache(capacity: tokens)
        model.runLayers(hidden: hidden, positions: Positions(Array(0..<tokens)), cache: cache) { tag, layer, tensor in
            guard tag == "layer_output", let expected = try? reference.floatTensor("hidden.layer.\(layer)") else { return }
            layerDifferences.append(self.scaledDifference(tensor, expected))
        }
        #expect(layerDifferences.count == model.layers.count)
        // fp32 against fp32: differences are rounding only (observed ≤ ~1e-6 relative).
        #expect(layerDifferences.allSatisfy { $0 < 1e-5 }, "\(name) per-layer relative differences \(layerDifferences)")

        let normed = model.finalNormed(hidden, rows: 0..<tokens)
        #expect(scaledDifference(normed, try reference.floatTensor("hidden.final_norm")) < 1e-5)

        let lastLogits = model.logits(hidden, rows: (tokens - 1)..<tokens)
        let logitDifference = maxAbsoluteDifference(lastLogits, try reference.floatTensor("logits.last"))
        #expect(logitDifference < 1e-4, "\(name) last-position logits differ by \(logitDifference)")
        if reference.entries["logits"] != nil {
            let all = model.logits(hidden, rows: 0..<tokens)
            #expect(maxAbsoluteDifference(all, try reference.floatTensor("logits")) < 1e-4)
        }
        print("\(name): max layer difference \(layerDifferences.max() ?? 0) (relative), last logits \(logitDifference) (absolute)")
    }

    @Test(arguments: fixtures)
    func greedyTokensWithTheCacheMatchTransformers(_ name: String) throws {
        let loaded = try LoadedModel.load(directory: Fixtures.url(name))
        let reference = try SafeTensorsFile(path: Fixtures.url(name).appendingPathComponent("reference.safetensors").path)
        let expected = try reference.integers("greedy_tokens")
        #expect(expected.count == 16)
        let result = try generateGreedy(
            model: loaded.languageModel, prompt: try reference.integers("input_ids"), maxNewTokens: 16, stopAtEndOfSequence: false)
        #expect(result.tokens == expected)
    }

    /// Decoding token by token through the cache gives the same logits as one prefill over the
    /// whole sequence (the cache and the decode positions are consistent).
    @Test func cachedDecodeEqualsFullPrefill() throws {
        let model = try LoadedModel.load(directory: Fixtures.url("tiny-llama")).languageModel
        let tokens = [1, 5, 9, 200, 31, 7]
        let full = try model.embed(tokens)
        model.runLayers(hidden: full, positions: Positions(Array(0..<tokens.count)), cache: model.makeCache(capacity: 8))
        let expected = model.logits(full, rows: 0..<tokens.count)

        let cache = model.makeCache(capacity: 2)  // grows as tokens arrive
        let prefill = try model.embed(Array(tokens[0..<2]))
        model.runLayers(hidden: prefill, positions: Positions([0, 1]), cache: cache)
        let prefillLogits = model.logits(prefill, rows: 0..<2)
        var worst = maxAbsoluteDifference(prefillLogits, expected.copyRows(0..<2))
        for position in 2..<tokens.count {
            let step = try model.embed([tokens[position]])
            model.runLayers(hidden: step, positions: Positions([position]), cache: cache)
            let logits = model.logits(step, rows: 0..<1)
            worst = max(worst, maxAbsoluteDifference(logits, expected.copyRows(position..<(position + 1))))
        }
        #expect(cache.layers.allSatisfy { $0.length == tokens.count })
        #expect(worst < 1e-5)
    }

    @Test func hubAndSavedLayoutsAreDetected() throws {
        let hub = try LoadedModel.load(directory: Fixtures.url("tiny-llava"))
        #expect(hub.languageLayout == .llavaHub && LlavaLayout.detect(in: hub.checkpoint) == .hub)
        let saved = try LoadedModel.load(directory: Fixtures.url("tiny-llava-saved"))
        #expect(saved.languageLayout == .llavaHub && LlavaLayout.detect(in: saved.checkpoint) == .saved)
        #expect(saved.languageModel.lmHead === saved.languageModel.embedTokens)  // tied: no lm_head in the file
        #expect(try LoadedModel.load(directory: Fixtures.url("tiny-llama")).languageLayout == .llama)
    }

    @Test func tokenOutsideTheVocabularyIsAnError() throws {
        let model = try LoadedModel.load(directory: Fixtures.url("tiny-llama")).languageModel
        #expect(throws: DecoderInputError.tokenOutOfRange(position: 1, token: 512, vocabularySize: 512)) {
            try model.embed([1, 512])
        }
        #expect(throws: DecoderInputError.emptyInput) { try model.embed([]) }
    }
}

@Suite struct WeightMatchingTests {
    /// A checkpoint with a tensor removed, one renamed and one of the wrong shape: the error lists all of them.
    @Test func missingUnexpectedAndMisshapedTensorsAreAllListed() throws {
        let source = try Checkpoint(directory: Fixtures.url("tiny-llama"))
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: Fixtures.url("tiny-llama/config.json"), to: directory.appendingPathComponent("config.json"))
        var items: [SafeTensorsWriter.Item] = []
        for name in source.tensorNames where name != "model.norm.weight" {
            var tensor = try source.floatTensor(name)
            var written = name
            if name == "model.layers.1.mlp.up_proj.weight" { written = "model.layers.1.mlp.up_projection.weight" }
            if name == "model.layers.0.input_layernorm.weight" { tensor = Tensor(shape: [3]) }
            items.append(.init(name: written, tensor: tensor))
        }
        try SafeTensorsWriter.write(items, to: directory.appendingPathComponent("model.safetensors"))
        do {
            _ = try LoadedModel.load(directory: directory)
            Issue.record("loading should fail")
        } catch let error as WeightMismatchError {
            #expect(error.missing.sorted() == ["model.layers.1.mlp.up_proj.weight", "model.norm.weight"])
            #expect(error.unexpected == ["model.layers.1.mlp.up_projection.weight"])
            #expect(error.wrongShape == ["model.layers.0.input_layernorm.weight: expected [64], found [3]"])
            #expect(error.description.contains("model.norm.weight"))
        }
    }
}
