import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction
import Vision

/// Qwen2-VL end to end against transformers (tools/reference/make_qwen2vl_fixtures.py): a chat
/// message with a photograph through our session (ChatML from the checkpoint's chat template,
/// byte-level BPE, the image processor, `<|image_pad|>` expansion) gives the processor's input ids
/// and `get_rope_index`'s 3-D positions; then every decoder layer, the last logits and 16 greedy
/// tokens (decoding continues at the rope delta), in both weight layouts.
@Suite struct Qwen2VLParityTests {
    static let fixtures = ["tiny-qwen2-vl", "tiny-qwen2.5-vl"]
    static let question = "What is shown in this image?"
    /// The reference's prompts: a landscape and a portrait photograph (grids of 12 × 18 and 20 × 8 patches).
    static let prompts = ["prompt", "portrait"]

    func reference(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.url(name).appendingPathComponent("reference.safetensors").path)
    }

    func preparedPrompt(_ session: InferenceSession, _ prompt: String = "prompt") throws -> PreparedPrompt {
        let (image, question) = prompt == "portrait"
            ? ("qwen2-vl-images/chelsea_portrait.png", "Describe the picture.") : ("images/chelsea.jpg", Self.question)
        return try session.prepare(.messages([ChatMessage(role: .user, parts: [.image(.file(Fixtures.url(image))), .text(question)])]))
    }

    @Test(arguments: fixtures, prompts)
    func inputIdsAndPositionsMatchTheProcessor(_ name: String, _ key: String) throws {
        let session = try InferenceSession(directory: Fixtures.url(name))
        let reference = try reference(name)
        let prompt = try preparedPrompt(session, key)
        #expect(prompt.inputIds == (try reference.integers("\(key).input_ids")))
        let expectedPositions = try reference.integers("\(key).position_ids")  // (3, tokens) row-major
        let positions = try #require(prompt.positions)
        #expect(positions.axes.flatMap { $0 } == expectedPositions)
        #expect(positions.next - prompt.inputIds.count == (try reference.integers("\(key).rope_delta"))[0])
        let grid = try reference.integers("\(key).image_grid_thw")
        #expect(prompt.imageBlocks.count == 1 && prompt.imageBlocks[0].count == grid[1] * grid[2] / 4)
    }

    @Test(arguments: fixtures, prompts)
    func everyLayerTheLogitsAndGreedyTokensMatchTransformers(_ name: String, _ key: String) throws {
        let session = try InferenceSession(directory: Fixtures.url(name))
        let reference = try reference(name)
        let prompt = try preparedPrompt(session, key)
        let decoder = try #require(session.loaded.llama)
        #expect(decoder.positionAxes == 3)
        let hidden = try session.embeddings(prompt)  // (tokens, hidden)
        var layerDifferences: [Float] = []
        decoder.runLayers(hidden: hidden, positions: try #require(prompt.positions), cache: decoder.makeCache(capacity: hidden.size(0))) { _, layer, tensor in
            guard let expected = try? reference.floatTensor("\(key).layer.\(layer)") else { return }
            let scale = max(1, expected.buffer.map(abs).max() ?? 0)
            layerDifferences.append(maxAbsoluteDifference(tensor, expected) / scale)
        }
        #expect(layerDifferences.count == decoder.layers.count && layerDifferences.allSatisfy { $0 < 1e-5 }, "\(layerDifferences)")
        let logits = decoder.logits(hidden, rows: (hidden.size(0) - 1)..<hidden.size(0))  // (1, vocab)
        let expectedLogits = try reference.floatTensor("\(key).last_logits")
        let logitDifference = maxAbsoluteDifference(logits, expectedLogits) / max(1, expectedLogits.buffer.map(abs).max() ?? 0)
        #expect(logitDifference < 1e-4)
        print("\(name) \(key): decoder layers \(layerDifferences) (relative), last logits \(logitDifference) (relative to the largest)")

        let result = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 16, stopAtEndOfSequence: false)
        #expect(result.tokens == (try reference.integers("\(key).greedy")))
    }

    /// PyramidDrop (drops after layers 1, 2, 3 keeping 50%, 25%, 12.5%) and FastV (after layer 2,
    /// half) on 3-D positions as PYRAMIDDROP.md §9 fixes them, against tools/reference/pdrop_reference.py:
    /// kept tokens, preserved positions, the pyramid cache, last logits and 16 greedy tokens.
    @Test(arguments: fixtures, ["pdrop", "fastv"])
    func keptTokensAndAnswersUnderReductionMatchTheReference(_ fixture: String, _ name: String) throws {
        let session = try InferenceSession(directory: Fixtures.url(fixture))
        let reference = try reference(fixture)
        let prompt = try preparedPrompt(session)
        var request = ReductionRequest()
        if name == "pdrop" {
            (request.kind, request.layers, request.ratios) = (.pdrop, [1, 2, 3], [0.5, 0.25, 0.125])
        } else {
            (request.kind, request.fastVLayer, request.fastVRatio) = (.fastv, 2, 0.5)
        }
        let reducer = try session.reducer(request, for: prompt)
        #expect(reducer.positionMode == .preserve)
        let cache = session.decoder.makeCache(capacity: prompt.inputIds.count)
        let prefill = session.decoder.prefill(
            embeddings: try session.embeddings(prompt), imageBlocks: prompt.imageBlocks, reducer: reducer, cache: cache, positions: prompt.positions)
        for drop in reducer.dropLayers.indices {
            #expect(prefill.keptImageTokens[drop] == [try reference.integers("\(name).kept.\(drop)")], "\(name) drop \(drop)")
        }
        #expect(prefill.positions.axes.flatMap { $0 } == (try reference.integers("\(name).positions")))
        #expect(cache.layers.map(\.length) == (try reference.integers("\(name).cache_lengths")))

        let result = try session.generate(prompt, reducer: reducer, maxNewTokens: 16, stopAtEndOfSequence: false)
        let expectedLogits = try reference.floatTensor("\(name).logits.last")
        let logitDifference = zip(result.lastPromptLogits, expectedLogits.buffer).map { abs($0 - $1) }.max() ?? .infinity
        #expect(logitDifference < 1e-4 * max(1, expectedLogits.buffer.map(abs).max() ?? 0))
        #expect(result.tokens == (try reference.integers("\(name).greedy_tokens")), "\(name) greedy tokens")
        print("\(fixture) \(name): kept \(prefill.keptImageTokens.map { $0.map(\.count) }), last logits \(logitDifference)")

        // The kept-token picture: the 252 × 168 view the tower sees, its 9 × 6 merged patches, a panel per drop.
        let picture = try makeTemporaryDirectory().appendingPathComponent("kept.png")
        try session.saveKeptPicture(images: [.file(Fixtures.url("images/chelsea.jpg"))], keptImageTokens: result.keptImageTokens, to: picture.path)
        let drawn = try ImageDecoder.decode(contentsOf: picture)
        let panels = reducer.dropLayers.count + 1
        #expect(drawn.width == panels * 252 + (panels - 1) * 6 && drawn.height == 168)
    }

    /// The vision side's exact count for the prompt's image, against a count taken from the
    /// loaded tower's own linear layers: every linear over its rows, attention within the image
    /// (Qwen2.5-VL: within each of its windows, except in its full-attention blocks).
    @Test(arguments: fixtures)
    func visionFLOPsCountEveryLinearOfTheTower(_ name: String) throws {
        let session = try InferenceSession(directory: Fixtures.url(name))
        let prompt = try preparedPrompt(session)
        let model = try #require(session.visionLanguageModel as? Qwen2VLModel)
        let tower = model.visionTower, configuration = tower.configuration
        let grid = try #require(try session.imageInput(.file(Fixtures.url("images/chelsea.jpg"))).patchGrid)
        let windows = tower.windowOrder(grids: [grid]).windowLengths.map { Double($0 * 4) }  // patches per window
        let patches = Double(prompt.imageTokens * 4), embed = Double(configuration.embedDim)
        func linear(_ layer: Linear, rows: Double) -> Double { rows * Double(layer.inFeatures * layer.outFeatures) }
        var expected = patches * Double(configuration.patchDimension) * embed
        for (index, block) in tower.blocks.enumerated() {
            expected += linear(block.queryKeyValue, rows: patches) + linear(block.projection, rows: patches)
            let windowed = configuration.generation == .qwen25VL && !configuration.fullAttentionBlocks.contains(index)
            expected += windowed ? windows.reduce(0) { $0 + 2 * $1 * $1 * embed } : 2 * patches * patches * embed
            switch block.mlp {
            case let .plain(fc1, fc2, _): expected += linear(fc1, rows: patches) + linear(fc2, rows: patches)
            case let .gated(gate, up, down): expected += linear(gate, rows: patches) + linear(up, rows: patches) + linear(down, rows: patches)
            }
        }
        expected += linear(tower.mergerFC1, rows: Double(prompt.imageTokens)) + linear(tower.mergerFC2, rows: Double(prompt.imageTokens))
        #expect(windows.count == 6)  // 6 × 9 tokens in windows of 4 × 4: 2 × 3 (used by Qwen2.5-VL only)
        let report = session.flops(prompt, reducer: NoReduction())
        #expect(report.exactVisionAndProjector == expected)
    }

    @Test func reindexingThreeDimensionalPositionsIsRefused() throws {
        let session = try InferenceSession(directory: Fixtures.url("tiny-qwen2-vl"))
        var request = ReductionRequest()
        request.positions = .reindex
        let error = #expect(throws: ReductionSettingError.self) { try session.reducer(request, for: try preparedPrompt(session)) }
        #expect("\(error!)".contains("M-RoPE") && "\(error!)".contains("preserve"))
    }

    /// The hub's config.json: the decoder's keys at the top level, `rope_scaling` of type "mrope",
    /// `in_chans`; the same model, the same answer.
    @Test(arguments: fixtures)
    func theHubConfigLayoutGivesTheSameAnswer(_ name: String) throws {
        let directory = try copyOfFixture(name)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var text = try #require(config.removeValue(forKey: "text_config") as? [String: Any])
        let rope = try #require(text.removeValue(forKey: "rope_parameters") as? [String: Any])
        text["rope_theta"] = rope["rope_theta"]
        text["rope_scaling"] = ["type": "mrope", "mrope_section": rope["mrope_section"]!]
        var vision = try #require(config["vision_config"] as? [String: Any])
        vision["in_chans"] = vision.removeValue(forKey: "in_channels")
        config["vision_config"] = vision
        config.merge(text) { outer, _ in outer }
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        let session = try InferenceSession(directory: directory)
        let result = try session.generate(try preparedPrompt(session), reducer: NoReduction(), maxNewTokens: 16, stopAtEndOfSequence: false)
        #expect(result.tokens == (try reference(name).integers("prompt.greedy")))
    }

    /// Configurations a Qwen2-VL cannot be built from are refused, naming the key.
    @Test(arguments: [
        ("rope_parameters", "rope_parameters.mrope_section"), ("mrope_section", "rope_parameters.mrope_section"),
        ("image_token_id", "image_token_id"), ("vision_hidden", "vision_config.hidden_size"),
    ])
    func badConfigurationsNameTheKey(_ change: String, _ key: String) throws {
        let directory = try copyOfFixture("tiny-qwen2-vl")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var text = try #require(config["text_config"] as? [String: Any])
        var vision = try #require(config["vision_config"] as? [String: Any])
        switch change {
        case "rope_parameters": text["rope_parameters"] = ["rope_type": "default", "rope_theta": 1e6]
        case "mrope_section": text["rope_parameters"] = ["rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 4]]
        case "image_token_id": config["image_token_id"] = 100_000
        default: vision["hidden_size"] = 48
        }
        (config["text_config"], config["vision_config"]) = (text, vision)
        try JSONSerialization.data(withJSONObject: config).write(to: url)
        let error = #expect(throws: ConfigurationError.self) { try LoadedModel.load(directory: directory) }
        #expect("\(error!)".contains("'\(key)'") || "\(error!)".contains("'text_config.\(key)'"), "\(error!)")
    }

    func copyOfFixture(_ name: String) throws -> URL {
        let directory = try makeTemporaryDirectory()
        let fixture = Fixtures.url(name)
        for file in try FileManager.default.contentsOfDirectory(atPath: fixture.path) {
            try FileManager.default.copyItem(at: fixture.appendingPathComponent(file), to: directory.appendingPathComponent(file))
        }
        return directory
    }

    /// transformers 4.5x saved Qwen2-VL as model.language_model.* and model.visual.*: the same
    /// model, the same answer.
    @Test(arguments: fixtures)
    func theNestedWeightLayoutGivesTheSameAnswer(_ name: String) throws {
        let directory = try copyOfFixture(name)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try Checkpoint(directory: Fixtures.url(name))
        let items = try source.tensorNames.map { name -> SafeTensorsWriter.Item in
            let renamed = name.hasPrefix("visual.") ? "model." + name
                : name.hasPrefix("model.") ? "model.language_model." + name.dropFirst("model.".count) : name
            return SafeTensorsWriter.Item(name: renamed, tensor: try source.floatTensor(name))
        }
        #expect(items.contains { $0.name == "model.visual.patch_embed.proj.weight" })
        try SafeTensorsWriter.write(items, to: directory.appendingPathComponent("model.safetensors"))
        let session = try InferenceSession(directory: directory)
        #expect(session.loaded.languageLayout == Qwen2VLLayout.nested.language)
        let result = try session.generate(try preparedPrompt(session), reducer: NoReduction(), maxNewTokens: 16, stopAtEndOfSequence: false)
        #expect(result.tokens == (try reference(name).integers("prompt.greedy")))
    }
}
