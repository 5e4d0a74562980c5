import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction
import Vision

/// LLaVA-NeXT end to end against transformers' LlavaNextProcessor + LlavaNextForConditionalGeneration
/// (tools/reference/make_llava_next_fixtures.py) on a tiny random checkpoint (56-pixel tiles, 16
/// patches each), on real photographs of several aspect ratios: pixel values, ids, the packed
/// features (base image, unpadded tiles, image_newline), last logits, 16 greedy tokens; PyramidDrop
/// and FastV over the whole anyres block.
@Suite struct LlavaNextParityTests {
    static let images = ["chelsea-451x300", "rocket-tall-200x500", "astronaut-512x512", "coffee-tiny-30x40", "astronaut-strip-400x64"]
    static let reference = Result { try SafeTensorsFile(path: Fixtures.url("tiny-llava-next/reference-next.safetensors").path) }
    static let hub = Result { try InferenceSession(directory: Fixtures.url("tiny-llava-next")) }
    /// transformers 5's save_pretrained layout (`vision_tower.*`, `rope_parameters`, processor_config.json), no tokenizer copy.
    static let saved = Result { try LoadedModel.load(directory: Fixtures.url("tiny-llava-next-saved")) }

    static func reducer(_ method: String) throws -> VisualTokenReducer {
        switch method {
        case "pdrop": return PyramidDropReducer(schedule: try PyramidDropSchedule(layers: [2, 4, 6], ratios: [0.5, 0.25, 0.125], layerCount: 8))
        case "fastv": return FastVReducer(setting: try FastVSetting(layer: 2, dropRatio: 0.5, layerCount: 8))
        default: return NoReduction()
        }
    }

    @Test(arguments: images)
    func pixelsIdsFeaturesLogitsAndTokensMatchTransformers(image name: String) throws {
        let reference = try Self.reference.get()
        let file = Fixtures.url("anyres/\(name).png")
        let pipeline = try Self.hub.get()
        #expect(pipeline.llava.configuration.isNext && pipeline.llava.imageNewline != nil)
        let input = try pipeline.imageInput(imageFile: file)
        let expectedPixels = try reference.floatTensor("\(name).pixel_values")
        #expect(input.tiles.count == expectedPixels.size(0))
        var pixelDifference: Float = 0
        let perTile = expectedPixels.count / expectedPixels.size(0)
        for (index, tile) in input.tiles.enumerated() {
            pixelDifference = max(pixelDifference, maxAbsoluteDifference(tile.pointer, expectedPixels.pointer + index * perTile, count: perTile))
        }
        #expect(pixelDifference == 0, "\(name): pixel values")

        let prompt = try pipeline.prepare(
            prompt: ConversationTemplate.llava15.prompt(question: "What is shown in this image?"), imageFiles: [file])
        #expect(prompt.inputIds == (try reference.integers("\(name).input_ids")), "\(name): input ids")
        #expect(prompt.imageBlocks.count == 1 && prompt.tiles == input.tiles.count)
        let expectedFeatures = try reference.floatTensor("\(name).image_features")

        // The hub layout through the pipeline, and transformers 5's saved layout given the same input.
        guard let saved = try Self.saved.get().llava else { Issue.record("the saved layout is not a LLaVA model"); return }
        for (layout, llava) in [("hub", pipeline.llava), ("saved", saved)] {
            let features = llava.imageFeatures(input)
            #expect(features.shape == expectedFeatures.shape, "\(name): \(features.shape) vs \(expectedFeatures.shape)")
            let featureDifference = maxAbsoluteDifference(features, expectedFeatures)
            #expect(featureDifference < 1e-5, "\(name) \(layout): features")
            for method in ["none", "pdrop", "fastv"] {
                let prefix = method == "none" ? "\(name)." : "\(name).\(method)."
                let result = try generateGreedy(
                    model: llava.languageModel, promptEmbeddings: llava.embed(tokens: prompt.inputIds, imageFeatures: [features]),
                    imageBlocks: prompt.imageBlocks, reducer: try Self.reducer(method), maxNewTokens: 16, stopAtEndOfSequence: false)
                let logitDifference = maxAbsoluteDifference(
                    Tensor(shape: [1, result.lastPromptLogits.count], values: result.lastPromptLogits), try reference.floatTensor(prefix + "logits.last"))
                #expect(logitDifference < 1e-4, "\(name) \(method) \(layout): last logits \(logitDifference)")
                #expect(result.tokens == (try reference.integers(prefix + "greedy_tokens")), "\(name) \(method) \(layout): greedy tokens")
                if method != "none" {
                    for stage in 0..<(method == "pdrop" ? 3 : 1) {
                        #expect(result.keptImageTokens[stage] == [try reference.integers(prefix + "kept.\(stage)")], "\(name) \(method) stage \(stage)")
                    }
                }
                print("llava-next \(name) \(method) \(layout): N \(prompt.imageTokens), features \(featureDifference), last logits \(logitDifference)")
            }
        }
    }

    @Test func maxTilesRestrictsTheGrid() throws {
        // chelsea (451×300) picks the 2×2 grid (4 tiles); with at most 2 tiles it gets a 1×2 or 2×1 grid.
        let file = Fixtures.url("anyres/chelsea-451x300.png")
        let limited = try InferenceSession(directory: Fixtures.url("tiny-llava-next"), maxTiles: 2)
        let input = try limited.imageInput(imageFile: file)
        #expect(input.tiles.count == 3)
        #expect(input.grid.map { $0.tileRows * $0.tileColumns } == 2)
        #expect(throws: PipelineError.noGridResolution(file: Fixtures.url("tiny-llava-next/preprocessor_config.json").path, maxTiles: 0)) {
            _ = try InferenceSession(directory: Fixtures.url("tiny-llava-next"), maxTiles: 0)
        }
        #expect(throws: PipelineError.padToSquareWithAnyres(directory: Fixtures.url("tiny-llava-next").path)) {
            _ = try InferenceSession(directory: Fixtures.url("tiny-llava-next"), padToSquare: true)
        }
        #expect(throws: PipelineError.maxTilesWithoutAnyres(directory: Fixtures.url("tiny-llava").path)) {
            _ = try InferenceSession(directory: Fixtures.url("tiny-llava"), maxTiles: 4)
        }
    }
}

/// A LLaVA-NeXT checkpoint without its `image_newline`, or a config asking for what NeXT cannot do, is a named error.
@Suite struct LlavaNextLoadingErrorTests {
    @Test func missingImageNewlineIsNamed() throws {
        let source = try Checkpoint(directory: Fixtures.url("tiny-llava-next"))
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: Fixtures.url("tiny-llava-next/config.json"), to: directory.appendingPathComponent("config.json"))
        let items = try source.tensorNames.filter { $0 != "image_newline" }.map { SafeTensorsWriter.Item(name: $0, tensor: try source.floatTensor($0)) }
        try SafeTensorsWriter.write(items, to: directory.appendingPathComponent("model.safetensors"))
        do {
            _ = try LoadedModel.load(directory: directory)
            Issue.record("loading should fail")
        } catch let error as WeightMismatchError {
            #expect(error.missing == ["image_newline"])
        }
        // The same weights under a LLaVA-1.5 config: image_newline is then an unexpected tensor.
        let config = try String(contentsOf: Fixtures.url("tiny-llava-next/config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"llava_next\"", with: "\"llava\"").replacingOccurrences(of: "LlavaNextFor", with: "LlavaFor")
        try config.write(to: directory.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let all = try source.tensorNames.map { SafeTensorsWriter.Item(name: $0, tensor: try source.floatTensor($0)) }
        try SafeTensorsWriter.write(all, to: directory.appendingPathComponent("model.safetensors"))
        do {
            _ = try LoadedModel.load(directory: directory)
            Issue.record("loading should fail")
        } catch let error as WeightMismatchError {
            #expect(error.unexpected == ["image_newline"])
        }
    }

    @Test func nextConfigNeedsTheDefaultStrategyAndValidPinpoints() throws {
        let text = try String(contentsOf: Fixtures.url("tiny-llava-next/config.json"), encoding: .utf8)
        let full = text.replacingOccurrences(of: "\"vision_feature_select_strategy\": \"default\"", with: "\"vision_feature_select_strategy\": \"full\"")
        #expect(throws: ConfigurationError.self) { try ModelConfiguration.parse(Data(full.utf8), file: "config.json") }
        let badPinpoints = text.replacingOccurrences(of: "\"image_grid_pinpoints\": [", with: "\"image_grid_pinpoints\": [[0, 56], ")
        do {
            _ = try ModelConfiguration.parse(Data(badPinpoints.utf8), file: "config.json")
            Issue.record("a zero pinpoint should fail")
        } catch let error as ConfigurationError {
            #expect("\(error)".contains("image_grid_pinpoints"))
        }
        guard case let .llava(parsed) = try ModelConfiguration.parse(Data(text.utf8), file: "config.json") else {
            Issue.record("not parsed as LLaVA"); return
        }
        #expect(parsed.isNext && parsed.imageGridPinpoints.count == 5)
    }
}
