import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction
import Training

/// `pdrop init`: a small LLaVA of random weights, initialised by transformers' rules, that loads
/// and generates; seeded; each parameter group's statistics match its rule.
@Suite struct InitCommandTests {
    /// CLIP 2 layers on 32 px with 8 px patches, LLaMA 2 layers hidden 64 with GQA 4/2, tiny-llava's vocabulary.
    static func configuration(_ adjust: (inout [String: Any]) -> Void = { _ in }) throws -> Data {
        var object: [String: Any] = [
            "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "image_token_index": 32000,
            "projector_hidden_act": "gelu", "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
            "image_seq_length": 16, "pad_token_id": 32001,
            "text_config": [
                "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32064, "max_position_embeddings": 512,
                "rms_norm_eps": 1e-5, "initializer_range": 0.02,
            ] as [String: Any],
            "vision_config": [
                "model_type": "clip_vision_model", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "projection_dim": 64,
            ] as [String: Any],
        ]
        adjust(&object)
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    static func initialise(_ data: Data, seed: UInt64 = 1, into output: URL? = nil) throws -> URL {
        let root = try makeTemporaryDirectory("pdrop-init")
        let file = root.appendingPathComponent("config.json")
        try data.write(to: file)
        let output = output ?? root.appendingPathComponent("model")
        try ModelInitialization.write(configuration: file, tokenizer: Fixtures.url("tiny-llava"), output: output, seed: seed)
        return output
    }

    @Test func loadsAndGeneratesFromAnImage() throws {
        let output = try Self.initialise(try Self.configuration())
        defer { try? FileManager.default.removeItem(at: output.deletingLastPathComponent()) }
        for name in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
            #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent(name).path), "\(name)")
        }
        _ = try LoadedModel.load(directory: output)
        let session = try InferenceSession(directory: output)
        let prompt = try session.prepare(prompt: "USER: <image>\nWhat is in the picture? ASSISTANT:", imageFiles: [Fixtures.url("images/chelsea.jpg")])
        #expect(prompt.imageBlocks.first?.count == 16)
        let result = try session.generate(prompt, reducer: NoReduction(), parameters: GenerationParameters(maxNewTokens: 4, stopAtEndOfSequence: false))
        #expect(result.tokens.count == 4)
        #expect(result.tokens.allSatisfy { $0 >= 0 && $0 < 32064 })
    }

    @Test func sameSeedSameBytesOtherSeedOtherBytes() throws {
        let data = try Self.configuration()
        let a = try Self.initialise(data, seed: 7), b = try Self.initialise(data, seed: 7), c = try Self.initialise(data, seed: 8)
        defer { for url in [a, b, c] { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) } }
        let bytes = try [a, b, c].map { try Data(contentsOf: $0.appendingPathComponent("model.safetensors")) }
        #expect(bytes[0] == bytes[1])
        #expect(bytes[0] != bytes[2])
    }

    /// Every tensor's empirical mean and std against its rule (five standard errors), the rules'
    /// values against transformers' formulas, norms exactly 1 and biases exactly 0.
    @Test func statisticsMatchTheRules() throws {
        let result = try ModelInitialization.initialize(configuration: try Self.configuration(), file: "config.json", seed: 3)
        let vision = "vision_tower.vision_model."
        let d = 64.0, layers = 2.0
        let expectedStd: [String: Double] = [
            "language_model.model.embed_tokens.weight": 0.02, "language_model.lm_head.weight": 0.02,
            "language_model.model.layers.0.self_attn.q_proj.weight": 0.02, "language_model.model.layers.1.mlp.down_proj.weight": 0.02,
            "multi_modal_projector.linear_1.weight": 0.02, "multi_modal_projector.linear_2.weight": 0.02,
            vision + "embeddings.class_embedding": pow(d, -0.5),
            vision + "embeddings.patch_embedding.weight": 0.02, vision + "embeddings.position_embedding.weight": 0.02,
            vision + "encoder.layers.0.self_attn.q_proj.weight": pow(d, -0.5) * pow(2 * layers, -0.5),
            vision + "encoder.layers.1.self_attn.v_proj.weight": pow(d, -0.5) * pow(2 * layers, -0.5),
            vision + "encoder.layers.0.self_attn.out_proj.weight": pow(d, -0.5),
            vision + "encoder.layers.0.mlp.fc1.weight": pow(2 * d, -0.5),
            vision + "encoder.layers.0.mlp.fc2.weight": pow(d, -0.5) * pow(2 * layers, -0.5),
        ]
        let rules = try InitializationRules(
            configuration: { if case let .llava(c) = try ModelConfiguration.parse(try Self.configuration(), file: "c") { return c }; fatalError() }(),
            json: try JSONSerialization.jsonObject(with: try Self.configuration()) as! [String: Any], file: "c")
        for (name, std) in expectedStd {
            #expect(rules.rule(for: name) == .normal(std: std), "\(name)")
            #expect(result.tensors[name] != nil, "\(name)")
        }
        #expect(abs(Self.moments(result.tensors["language_model.model.embed_tokens.weight"]!).std - 0.02) < 0.0002)

        var normalCount = 0, onesCount = 0, zerosCount = 0
        for (name, tensor) in result.tensors {
            switch try #require(rules.rule(for: name), "\(name)") {
            case .ones:
                onesCount += 1
                #expect(tensor.buffer.allSatisfy { $0 == 1 }, "\(name)")
            case .zeros:
                zerosCount += 1
                #expect(tensor.buffer.allSatisfy { $0 == 0 }, "\(name)")
            case .sineCosine2D:
                Issue.record("\(name): a sine-cosine table without --vision-positions sincos")
            case let .normal(std):
                normalCount += 1
                let (mean, sample) = Self.moments(tensor)
                let n = Double(tensor.count)
                #expect(abs(mean) < 5 * std / n.squareRoot(), "\(name): mean \(mean)")
                #expect(abs(sample - std) < 5 * std / (2 * n).squareRoot(), "\(name): std \(sample), expected \(std)")
            }
        }
        // 2 LLaMA layers × 7 matrices + embeddings + head + 2 projector + class/patch/position + 2 CLIP layers × 6.
        #expect(normalCount == 14 + 2 + 2 + 3 + 12)
        #expect(onesCount == 2 * 2 + 1 + 2 + 2 * 2)  // RMSNorms; pre/post LayerNorm; CLIP layer norms
        #expect(zerosCount == 2 + 2 + 2 * 2 + 2 * 6)  // projector; pre/post; CLIP layer norms; CLIP linears
    }

    @Test func projectorAndHeadTakeTheLlavaConfigsOwnRangeAndVisionItsFactor() throws {
        let data = try Self.configuration {
            $0["initializer_range"] = 0.05
            var vision = $0["vision_config"] as! [String: Any]
            vision["initializer_factor"] = 2.0
            $0["vision_config"] = vision
        }
        let result = try ModelInitialization.initialize(configuration: data, file: "config.json", seed: 3)
        let projector = Self.moments(result.tensors["multi_modal_projector.linear_1.weight"]!).std
        #expect(abs(projector - 0.05) < 0.002)
        #expect(abs(Self.moments(result.tensors["language_model.lm_head.weight"]!).std - 0.05) < 0.0005)
        let position = Self.moments(result.tensors["vision_tower.vision_model.embeddings.position_embedding.weight"]!).std
        #expect(abs(position - 0.04) < 0.003)
        #expect(abs(Self.moments(result.tensors["language_model.model.embed_tokens.weight"]!).std - 0.02) < 0.0002)
    }

    /// `--vision-positions sincos`: the position embedding is the 2-D sine-cosine table (values
    /// from Python's math for a 4 × 4 grid, width 64, so ω_k = 10000^(−k/16)); every other
    /// tensor is the one the normal initialisation gives with the same seed.
    @Test func sineCosinePositionsAreTheTableAndChangeNothingElse() throws {
        let normal = try ModelInitialization.initialize(configuration: try Self.configuration(), file: "config.json", seed: 3)
        let table = try ModelInitialization.initialize(configuration: try Self.configuration(), file: "config.json", seed: 3, visionPositions: .sincos)
        let name = "vision_tower.vision_model.embeddings.position_embedding.weight"
        #expect(Set(normal.tensors.keys) == Set(table.tensors.keys))
        for (key, tensor) in normal.tensors where key != name {
            #expect(tensor.buffer.elementsEqual(table.tensors[key]!.buffer), "\(key)")
        }
        let positions = try #require(table.tensors[name])
        #expect(positions.shape == [17, 64])
        #expect((0..<64).allSatisfy { positions[$0] == 0 }, "the class token's entry")
        // Patch 6 is row 1, column 2; patch 15 is row 3, column 3.
        func entry(_ patch: Int, _ column: Int) -> Double { Double(positions[(1 + patch) * 64 + column]) }
        let expected: [(patch: Int, column: Int, value: Double)] = [
            (6, 0, 0.8414709848078965), (6, 16, 0.5403023058681398), (6, 32, 0.9092974268256817), (6, 48, -0.4161468365471424),
            (6, 1, 0.5331684399140229), (6, 53, 0.9936821085360512), (15, 47, 0.0005334837977063175), (0, 16, 1), (0, 0, 0),
        ]
        for (patch, column, value) in expected {
            #expect(abs(entry(patch, column) - value) < 1e-7, "patch \(patch) column \(column): \(entry(patch, column)) vs \(value)")
        }
        let odd = try Self.configuration {
            var vision = $0["vision_config"] as! [String: Any]
            vision["hidden_size"] = 70
            vision["num_attention_heads"] = 5
            $0["vision_config"] = vision
        }
        do {
            _ = try ModelInitialization.initialize(configuration: odd, file: "config.json", seed: 0, visionPositions: .sincos)
            Issue.record("a width of 70 was accepted for a sine-cosine table")
        } catch {
            #expect(String(describing: error).contains("vision_config.hidden_size") && String(describing: error).contains("divisible by 4"), "\(error)")
        }
    }

    @Test func badConfigurationsAndAnOccupiedOutputAreErrors() throws {
        let negative = try Self.configuration {
            var text = $0["text_config"] as! [String: Any]
            text["initializer_range"] = -1
            $0["text_config"] = text
        }
        #expect(throws: ConfigurationError.self) { try ModelInitialization.initialize(configuration: negative, file: "config.json", seed: 0) }
        do {
            _ = try ModelInitialization.initialize(configuration: negative, file: "config.json", seed: 0)
        } catch {
            #expect(String(describing: error).contains("text_config.initializer_range"))
        }
        let zeroHidden = try Self.configuration {
            var text = $0["text_config"] as! [String: Any]
            text["hidden_size"] = 0
            $0["text_config"] = text
        }
        do {
            _ = try ModelInitialization.initialize(configuration: zeroHidden, file: "config.json", seed: 0)
            Issue.record("hidden_size 0 was accepted")
        } catch {
            #expect(String(describing: error).contains("hidden_size"), "\(error)")
        }
        let llama = try JSONSerialization.data(withJSONObject: ["model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1])
        #expect(throws: InitializationError.self) { try ModelInitialization.initialize(configuration: llama, file: "config.json", seed: 0) }

        let occupied = try makeTemporaryDirectory("pdrop-init-occupied")
        defer { try? FileManager.default.removeItem(at: occupied) }
        try Data("x".utf8).write(to: occupied.appendingPathComponent("keep.txt"))
        #expect(throws: InitializationError.outputNotEmpty(directory: occupied.path)) {
            _ = try Self.initialise(try Self.configuration(), into: occupied)
        }
        #expect(try String(contentsOf: occupied.appendingPathComponent("keep.txt"), encoding: .utf8) == "x")
    }

    /// The tokenizer must fit the config: its `<image>` id is `image_token_index`, its ids fit `vocab_size`.
    @Test func aTokenizerThatDoesNotFitTheConfigIsAnError() throws {
        for adjust in [{ (object: inout [String: Any]) in object["image_token_index"] = 7 },
                       { (object: inout [String: Any]) in object["text_config"] = (object["text_config"] as! [String: Any]).merging(["vocab_size": 32001]) { $1 } }] {
            do {
                _ = try Self.initialise(try Self.configuration(adjust))
                Issue.record("a mismatched tokenizer was accepted")
            } catch let error as InitializationError {
                guard case .tokenizerMismatch = error else { Issue.record("\(error)"); continue }
                #expect(error.description.contains("tokenizer.json does not fit the config"))
            }
        }
    }

    static func moments(_ tensor: Tensor) -> (mean: Double, std: Double) {
        var sum = 0.0, squares = 0.0
        for value in tensor.buffer { sum += Double(value); squares += Double(value) * Double(value) }
        let n = Double(tensor.count), mean = sum / n
        return (mean, (squares / n - mean * mean).squareRoot())
    }
}

extension InitCommandTests {
    /// tiny-llava's processor config is for 336 px: the copy takes the tower's 32 px; without one, CLIP's is written.
    @Test func processorConfigurationMatchesTheImageSize() throws {
        let output = try Self.initialise(try Self.configuration())
        defer { try? FileManager.default.removeItem(at: output.deletingLastPathComponent()) }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("preprocessor_config.json"))) as! [String: Any]
        #expect((object["size"] as? [String: Int]) == ["shortest_edge": 32])
        #expect((object["crop_size"] as? [String: Int]) == ["height": 32, "width": 32])
        let clip = ModelInitialization.preprocessorConfiguration(imageSize: 32)
        #expect((clip["image_mean"] as? [Double]) == [0.48145466, 0.4578275, 0.40821073])
        #expect((clip["image_std"] as? [Double]) == [0.26862954, 0.26130258, 0.27577711])
        #expect(clip["rescale_factor"] as? Double == 1.0 / 255.0)
    }
}

extension InitCommandTests {
    /// config.json keeps floats floats (transformers 5 refuses `initializer_factor: 2`), and the dtype set.
    @Test func configurationKeepsFloatsAndSetsTheDtype() throws {
        // Written as text: JSONSerialization would write the 2.0 as 2.
        let base = String(decoding: try Self.configuration(), as: UTF8.self)
        let marker = #""intermediate_size":128,"model_type":"clip_vision_model""#
        try #require(base.contains(marker))
        let data = Data(base.replacingOccurrences(of: marker, with: #""initializer_factor":2.0,"layer_norm_eps":1e-05,"# + marker).utf8)
        let output = try Self.initialise(data)
        defer { try? FileManager.default.removeItem(at: output.deletingLastPathComponent()) }
        let text = try String(contentsOf: output.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(text.contains("\"initializer_factor\": 2.0"))
        #expect(text.contains("\"layer_norm_eps\": 1e-05"))
        #expect(text.contains("\"torch_dtype\": \"float32\""))
        #expect(text.contains("\"vision_feature_layer\": -2"))
        let written = try ModelConfiguration.parse(Data(text.utf8), file: "config.json")
        #expect(written == (try ModelConfiguration.parse(data, file: "config.json")))
    }
}
