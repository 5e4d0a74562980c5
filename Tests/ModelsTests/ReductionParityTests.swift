import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction

/// PyramidDrop and FastV inside the decoder against the PyTorch reference implementation of
/// ../shared/PYRAMIDDROP.md (tools/reference/pdrop_reference.py) on tiny-llava: 8 layers with
/// GQA, schedule [2,4,6]/[0.5,0.25,0.125], FastV K=2 R=0.5, both position modes, two images.
@Suite struct ReductionParityTests {
    static let cases = ["pdrop.reindex", "pdrop.preserve", "fastv.preserve", "fastv.reindex", "pdrop.twoimages"]
    static let model = Result { try LoadedModel.load(directory: Fixtures.url("tiny-llava")) }
    static let reference = Result { try SafeTensorsFile(path: Fixtures.url("tiny-llava/reference-pdrop.safetensors").path) }
    static let imageReference = Result { try SafeTensorsFile(path: Fixtures.url("tiny-llava/reference-image.safetensors").path) }

    func reducer(for name: String, layers: Int) throws -> VisualTokenReducer {
        let method = name.split(separator: ".")[0], mode = name.split(separator: ".")[1]
        let positions: PositionMode = mode == "preserve" ? .preserve : .reindex
        if method == "fastv" {
            return FastVReducer(setting: try FastVSetting(layer: 2, dropRatio: 0.5, layerCount: layers), positionMode: positions)
        }
        let schedule = try PyramidDropSchedule(layers: [2, 4, 6], ratios: [0.5, 0.25, 0.125], layerCount: layers)
        return PyramidDropReducer(schedule: schedule, positionMode: positions)
    }

    /// Prompt ids and projected image features of a case.
    func inputs(for name: String, llava: LlavaModel) throws -> (ids: [Int], features: [Tensor]) {
        let reference = try Self.reference.get()
        if name == "pdrop.twoimages" {
            let features = try reference.floatTensor("pdrop.twoimages.image_features")  // (2, 576, hidden)
            let perImage = features.count / 2
            let split = (0..<2).map { image in
                let tensor = Tensor(shape: [576, features.size(2)])
                tensor.pointer.update(from: features.pointer + image * perImage, count: perImage)
                return tensor
            }
            return (try reference.integers("pdrop.twoimages.input_ids"), split)
        }
        let image = try Self.imageReference.get()
        return (try image.integers("input_ids"), [llava.imageFeatures(pixelValues: try image.floatTensor("pixel_values"))])
    }

    @Test(arguments: cases)
    func keptTokensLogitsAndGreedyTokensMatchTheReference(_ name: String) throws {
        let loaded = try Self.model.get()
        let llava = try #require(loaded.llava)
        let model = llava.languageModel
        let reference = try Self.reference.get()
        let reducer = try reducer(for: name, layers: model.layers.count)
        let (ids, features) = try inputs(for: name, llava: llava)
        let blocks = llava.imageBlocks(in: ids)
        #expect(blocks.count == features.count)

        var hiddenDifference: Float = 0
        var comparedLayers = 0
        let cache = model.makeCache(capacity: ids.count)
        let prefill = model.prefill(
            embeddings: try llava.embed(tokens: ids, imageFeatures: features), imageBlocks: blocks, reducer: reducer, cache: cache
        ) { _, layer, hidden in
            guard let expected = try? reference.floatTensor("\(name).hidden.layer.\(layer)") else { return }
            #expect(hidden.shape == expected.shape, "layer \(layer)")
            if hidden.shape == expected.shape {
                hiddenDifference = max(hiddenDifference, maxAbsoluteDifference(hidden, expected) / max(1, expected.buffer.map(abs).max() ?? 0))
                comparedLayers += 1
            }
        }

        // Kept image tokens, drop by drop and block by block.
        let drops = reducer.dropLayers.count
        #expect(prefill.keptImageTokens.count == drops)
        for drop in 0..<drops {
            for block in blocks.indices {
                let suffix = blocks.count > 1 ? ".block.\(block)" : ""
                let expected = try reference.integers("\(name).kept.\(drop)\(suffix)")
                #expect(prefill.keptImageTokens[drop][block] == expected, "\(name) drop \(drop) block \(block)")
            }
        }
        #expect(prefill.positions.linear == (try reference.integers("\(name).positions.\(drops - 1)")))
        #expect(cache.layers.map(\.length) == (try reference.integers("\(name).cache_lengths")))
        #expect(hiddenDifference < 1e-5, "\(name): per-layer relative difference \(hiddenDifference)")

        let last = prefill.hidden.size(0) - 1
        let logits = model.logits(prefill.hidden, rows: last..<(last + 1))
        let logitDifference = maxAbsoluteDifference(logits, try reference.floatTensor("\(name).logits.last"))
        #expect(logitDifference < 1e-4, "\(name): last logits differ by \(logitDifference)")

        let generated = try generateGreedy(
            model: model, promptEmbeddings: try llava.embed(tokens: ids, imageFeatures: features), imageBlocks: blocks,
            reducer: reducer, maxNewTokens: 16, stopAtEndOfSequence: false)
        #expect(generated.tokens == (try reference.integers("\(name).greedy_tokens")), "\(name) greedy tokens")
        #expect(generated.keptImageTokens == prefill.keptImageTokens)
        print("\(name): kept \(prefill.keptImageTokens.map { $0.map(\.count) }), layers compared \(comparedLayers) (max relative \(hiddenDifference)), last logits \(logitDifference)")
    }

    /// A schedule of ratio 1.0 drops nothing: the same logits as no reduction.
    @Test func ratioOneEqualsNoReduction() throws {
        let llava = try #require(try Self.model.get().llava)
        let model = llava.languageModel
        let (ids, features) = try inputs(for: "pdrop.reindex", llava: llava)
        let blocks = llava.imageBlocks(in: ids)
        func lastLogits(_ reducer: VisualTokenReducer) throws -> Tensor {
            let prefill = model.prefill(
                embeddings: try llava.embed(tokens: ids, imageFeatures: features), imageBlocks: blocks, reducer: reducer,
                cache: model.makeCache(capacity: ids.count))
            let last = prefill.hidden.size(0) - 1
            return model.logits(prefill.hidden, rows: last..<(last + 1))
        }
        let identity = PyramidDropReducer(schedule: try PyramidDropSchedule(layers: [2, 4], ratios: [1, 1], layerCount: 8))
        #expect(maxAbsoluteDifference(try lastLogits(identity), try lastLogits(NoReduction())) == 0)
    }

    @Test func imageBlocksSplitAdjacentImagesByLength() throws {
        let llava = try #require(try Self.model.get().llava)
        let image = llava.configuration.imageTokenIndex
        let ids = [1, 2] + Array(repeating: image, count: 1152) + [3] + Array(repeating: image, count: 576) + [4]
        #expect(llava.imageBlocks(in: ids) == [2..<578, 578..<1154, 1155..<1731])
    }
}
