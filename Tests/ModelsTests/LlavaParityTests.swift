import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// LLaVA end to end against transformers, from the reference pixel_values onwards: the vision
/// tower layer by layer, the selected and projected features, the merged input embeddings,
/// the decoder, the logits and 16 greedy tokens (tools/reference/make_llava_fixtures.py).
@Suite struct LlavaParityTests {
    static let fixtures = ["tiny-llava", "tiny-llava-saved"]

    func scaledDifference(_ ours: Tensor, _ reference: Tensor) -> Float {
        #expect(ours.count == reference.count, "shapes \(ours.shape) vs \(reference.shape)")
        let scale = max(1, reference.buffer.map(abs).max() ?? 0)
        return maxAbsoluteDifference(ours, reference) / scale
    }

    @Test(arguments: fixtures)
    func visionTowerProjectorAndDecoderMatchTransformers(_ name: String) throws {
        let loaded = try LoadedModel.load(directory: Fixtures.url(name))
        let llava = try #require(loaded.llava)
        let reference = try SafeTensorsFile(path: Fixtures.url(name).appendingPathComponent("reference-image.safetensors").path)
        // Both fixtures see the same image through the same processor; tiny-llava stores the pixels.
        let pixelValues = try SafeTensorsFile(path: Fixtures.url("tiny-llava/reference-image.safetensors").path).floatTensor("pixel_values")

        let allLayers = Array(0...llava.visionTower.layers.count)
        let states = llava.visionTower.hiddenStates(pixelValues: pixelValues, indices: allLayers)
        let visionDifferences = try allLayers.map { scaledDifference(states[$0], try reference.floatTensor("vision.hidden.\($0)")) }
        #expect(visionDifferences.allSatisfy { $0 < 1e-5 }, "\(name) vision layers \(visionDifferences)")
        let selected = llava.visionFeatures(pixelValues: pixelValues)
        #expect(selected.shape == [576, 32])
        #expect(scaledDifference(selected, try reference.floatTensor("image_features.selected")) < 1e-5)
        let projected = llava.imageFeatures(pixelValues: pixelValues)
        let projectedDifference = scaledDifference(projected, try reference.floatTensor("image_features.projected"))
        #expect(projectedDifference < 1e-5)

        let inputIds = try reference.integers("input_ids")
        let model = llava.languageModel
        let hidden = try llava.embed(tokens: inputIds, imageFeatures: [projected])
        #expect(scaledDifference(hidden, try reference.floatTensor("hidden.embeddings")) < 1e-5)
        var layerDifferences: [Float] = []
        model.runLayers(hidden: hidden, positions: Positions(Array(inputIds.indices)), cache: model.makeCache(capacity: inputIds.count)) { _, layer, tensor in
            if let expected = try? reference.floatTensor("hidden.layer.\(layer)") { layerDifferences.append(self.scaledDifference(tensor, expected)) }
        }
        #expect(layerDifferences.count == model.layers.count && layerDifferences.allSatisfy { $0 < 1e-5 }, "\(layerDifferences)")
        let logits = model.logits(hidden, rows: (inputIds.count - 1)..<inputIds.count)
        let logitDifference = maxAbsoluteDifference(logits, try reference.floatTensor("logits.last"))
        #expect(logitDifference < 1e-4)
        print("\(name) image prompt: vision \(visionDifferences.max()!), projected \(projectedDifference), decoder \(layerDifferences.max() ?? 0) (relative); last logits \(logitDifference) (absolute)")

        let result = try generateGreedy(
            model: model, promptEmbeddings: llava.embed(tokens: inputIds, imageFeatures: [projected]), maxNewTokens: 16,
            stopAtEndOfSequence: false)
        #expect(result.tokens == (try reference.integers("greedy_tokens")))
    }

    @Test func imageTokenCountMustMatchTheImages() throws {
        let llava = try #require(try LoadedModel.load(directory: Fixtures.url("tiny-llava")).llava)
        let features = Tensor(shape: [576, 32])
        #expect(throws: LlavaInputError.imageTokenCountMismatch(imageTokensInPrompt: 2, images: 1, featureRows: 576)) {
            try llava.embed(tokens: [1, 32000, 32000, 5], imageFeatures: [features])
        }
    }
}
