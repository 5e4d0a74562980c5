import Engine
import Foundation
import Models
import TensorCore
import Testing
import TestSupport
import TokenReduction
import Vision

/// A third family added from outside the engine: LLaVA whose projected features are average-
/// pooled 2×2 (a quarter of the image tokens). It is a subclass and a registry entry, nothing
/// more: the session, prefill, the reduction driver and generation run it unchanged.
final class PooledLlava: LlavaModel {
    var side: Int { visionTower.patchesPerSide }

    override func assembleImageFeatures(tileFeatures: [Tensor], image: ImageInput) -> Tensor {
        let features = tileFeatures[0], width = features.size(1), half = side / 2
        let pooled = Tensor(shape: [half * half, width])  // (patches / 4, hidden)
        for y in 0..<half {
            for x in 0..<half {
                let output = pooled.pointer + (y * half + x) * width
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let input = features.pointer + ((2 * y + dy) * side + 2 * x + dx) * width
                    for i in 0..<width { output[i] += 0.25 * input[i] }
                }
            }
        }
        return pooled
    }

    override func imageTokenCount(_ image: ImageInput) -> Int { (side / 2) * (side / 2) }

    override func makeImageProcessor(directory: URL, options: ImageProcessingOptions) throws -> any ImageProcessing {
        PooledProcessor(base: try super.makeImageProcessor(directory: directory, options: options), tokens: (side / 2) * (side / 2))
    }

    struct PooledProcessor: ImageProcessing {
        let base: any ImageProcessing
        let tokens: Int
        func prepare(_ image: RGBImage, source: String) throws -> ImageInput { try base.prepare(image, source: source) }
        func imageTokenCount(height: Int, width: Int) -> Int { tokens }
        var drawsKeptTokens: Bool { false }
        func keptTokenView(_ image: RGBImage) throws -> (view: RGBImage, grid: TokenGrid)? { nil }
    }

    static let toyFamily = ModelFamily.llavaStyle(
        name: "pooled LLaVA (test)", modelTypes: ["toy_pooled_llava"], architectures: ["ToyPooledLlavaForConditionalGeneration"],
        model: PooledLlava.self)
}

@Suite struct ModelFamilyTests {
    /// tiny-llava's files with config.json naming the toy family.
    static func toyCheckpoint() throws -> URL {
        let directory = try makeTemporaryDirectory("toy-family")
        for name in try FileManager.default.contentsOfDirectory(atPath: Fixtures.url("tiny-llava").path) where !name.hasPrefix("reference") {
            try FileManager.default.copyItem(at: Fixtures.url("tiny-llava/\(name)"), to: directory.appendingPathComponent(name))
        }
        let configURL = directory.appendingPathComponent("config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["model_type"] = "toy_pooled_llava"
        config["architectures"] = ["ToyPooledLlavaForConditionalGeneration"]
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        return directory
    }

    @Test func aThirdFamilyRunsThroughTheRegistryUnchanged() throws {
        let directory = try Self.toyCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        ModelRegistry.register(PooledLlava.toyFamily)

        let session = try InferenceSession(directory: directory)
        #expect(session.loaded.family.name == "pooled LLaVA (test)" && session.visionLanguageModel is PooledLlava)
        let image = Fixtures.url("images/chelsea.jpg")
        let prompt = try session.prepare(.messages([ChatMessage(role: .user, parts: [.image(.file(image)), .text("What is it?")])]))
        #expect(prompt.imageTokens == 144 && prompt.imageBlocks.count == 1)

        // Its features are the LLaVA-1.5 features of the same weights, pooled 2×2.
        let plain = try InferenceSession(directory: Fixtures.url("tiny-llava"))
        let full = plain.llava.imageFeatures(try plain.imageInput(imageFile: image))  // (576, hidden)
        let width = full.size(1)
        let topLeft = (0..<width).map { i in 0.25 * (full[i] + full[width + i] + full[24 * width + i] + full[25 * width + i]) }
        #expect(zip(topLeft, prompt.imageFeatures[0].toArray().prefix(width)).allSatisfy { abs($0 - $1) < 1e-5 })

        // PyramidDrop's driver cuts its 144-token block 72 → 36 → 18, with prefill and decoding unchanged.
        let reducer = PyramidDropReducer(schedule: try .paperDefault(layerCount: session.decoder.layerCount))
        let result = try session.generate(prompt, reducer: reducer, parameters: GenerationParameters(maxNewTokens: 4, stopAtEndOfSequence: false))
        #expect(result.keptImageTokens.map { $0[0].count } == [72, 36, 18])
        #expect(result.tokens.count == 4 && result.text != nil)
        // Without reduction the session's prefill equals one written by hand over the protocols.
        let none = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 1, stopAtEndOfSequence: false)
        let model = try #require(session.visionLanguageModel)
        let embeddings = try model.embed(tokens: prompt.inputIds, imageFeatures: prompt.imageFeatures)
        let cache = model.decoder.makeCache(capacity: prompt.inputIds.count)
        model.decoder.runLayers(hidden: embeddings, positions: .sequential(prompt.inputIds.count), cache: cache)
        let last = prompt.inputIds.count - 1
        #expect(model.decoder.logits(embeddings, rows: last..<(last + 1)).toArray() == none.lastPromptLogits)
    }

    @Test func anUnknownModelTypeNamesTheFamiliesThereAre() throws {
        let error = #expect(throws: ConfigurationError.self) {
            try ModelConfiguration.parse(Data(#"{"model_type": "mllama"}"#.utf8), file: "config.json")
        }
        #expect("\(error!)".contains("'mllama' is not supported") && "\(error!)".contains("'llava_next'") && "\(error!)".contains("'qwen2_vl'"))
    }
}
