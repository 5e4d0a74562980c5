import Engine
import Foundation
import Models
import TensorCore
import Testing
import TestSupport
import TokenReduction

/// Requests and checkpoints that used to end in an abort, a hang or a silently wrong answer:
/// each ends in an error that names what is wrong (or, for the context, a stated stop).
@Suite struct ReliabilityLimitTests {
    /// A copy of a fixture checkpoint (its files linked, not copied) whose config.json is
    /// `edit`ed; removed by the caller.
    static func checkpoint(_ fixture: String, editing edit: (inout [String: Any]) -> Void) throws -> URL {
        let source = Fixtures.url(fixture), directory = try makeTemporaryDirectory("reliability")
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "config.json" {
            try FileManager.default.createSymbolicLink(
                at: directory.appendingPathComponent(name), withDestinationURL: source.appendingPathComponent(name))
        }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: directory.appendingPathComponent("config.json"))
        return directory
    }

    // MARK: - Context

    /// `--max-new-tokens 999999999 --ignore-eos`: the cache is not sized for it, and generation
    /// stops when the context (256 for tiny-llama) is full.
    @Test func generationStopsAtAFullContext() throws {
        let session = try InferenceSession(directory: Fixtures.url("tiny-llama"))
        let prompt = try session.prepare(.tokenIds(Array(repeating: 17, count: 250)))
        let result = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 999_999_999, stopAtEndOfSequence: false)
        #expect(result.tokens.count == 6 && result.stopReason == .contextFull)
        let short = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 6, stopAtEndOfSequence: false)
        #expect(short.tokens == result.tokens && short.stopReason == .maxTokens)

        let full = try session.prepare(.tokenIds(Array(repeating: 17, count: 256)))
        #expect(throws: GenerationError.promptFillsContext(promptTokens: 256, context: 256)) {
            try session.generate(full, reducer: NoReduction(), maxNewTokens: 1)
        }
    }

    // MARK: - Non-finite weights

    @Test func nonFiniteWeightsFailInsteadOfAnsweringNothing() throws {
        let session = try InferenceSession(directory: Fixtures.url("tiny-llama"))
        session.loaded.llama!.finalNorm[3] = .nan  // this session's own fp32 copy
        let prompt = try session.prepare(.tokenIds([1, 17, 300, 42]))
        #expect {
            try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 4)
        } throws: { error in
            error as? GenerationError == .nonFiniteLogits(step: 0) && "\(error)".contains("non-finite values")
        }
    }

    // MARK: - Reductions that keep nothing

    @Test func aReductionThatKeepsNoImageTokenIsRefused() throws {
        let shape = DecoderShape(layers: 4, hidden: 64, intermediate: 160, heads: 8, keyValueHeads: 2, headDim: 8, vocabulary: 512)
        var request = ReductionRequest()
        request.layers = [1, 2]
        request.ratios = [0.5, 0.001]
        #expect {
            try request.makeReducer(decoder: shape, imageTokens: 576)
        } throws: { error in
            "\(error)".contains("keeps none of the 576 image tokens after layer 2")
        }
        #expect(try request.makeReducer(decoder: shape, imageTokens: 5000).keptCount(originalCount: 5000, afterDrop: 1) == 5)
        _ = try request.makeReducer(decoder: shape, imageTokens: nil)  // a prompt without images
        request = ReductionRequest()
        request.kind = .fastv
        request.fastVRatio = 0.999
        #expect(throws: ReductionSettingError.self) { try request.makeReducer(decoder: shape, imageTokens: 100) }
    }

    /// A budget over a prompt without images has nothing to solve and nothing to drop: no error
    /// (the server's default budget applies to text-only requests too), but its flags are still checked.
    @Test(arguments: [ReductionKind.pdrop, .fastv, .random])
    func aBudgetOverAPromptWithoutImagesDropsNothing(_ kind: ReductionKind) throws {
        let shape = DecoderShape(layers: 4, hidden: 64, intermediate: 160, heads: 8, keyValueHeads: 2, headDim: 8, vocabulary: 512)
        var request = ReductionRequest()
        request.kind = kind
        request.budget = .averageImageTokens(128)
        #expect(throws: ReductionSettingError.self) { try request.makeReducer(decoder: shape, imageTokens: 16) }
        var unbudgeted = ReductionRequest()
        unbudgeted.kind = kind
        let expected = try unbudgeted.makeReducer(decoder: shape, imageTokens: nil)
        #expect(describe(try request.makeReducer(decoder: shape, imageTokens: nil)) == describe(expected))
        request.layers = [1]
        #expect(throws: ReductionSettingError.self) { try request.makeReducer(decoder: shape, imageTokens: nil) }
    }

    // MARK: - Image token

    /// image_token_index 1 is LLaMA's BOS: every prompt would begin with an image block.
    @Test func anImageTokenThatIsBOSIsRefusedAtLoad() throws {
        let directory = try Self.checkpoint("tiny-llava") { $0["image_token_index"] = 1 }
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: PipelineError.imageTokenIsSpecial(directory: directory.path, token: 1)) {
            try InferenceSession(directory: directory)
        }
    }

    // MARK: - Config sizes against the weights

    @Test(arguments: [
        ("vocab_size", 1_000_000_000_000), ("hidden_size", 1_000_000_000), ("num_hidden_layers", 1_000_000_000),
        ("intermediate_size", 1_000_000_000),
    ])
    func configSizesAreCheckedAgainstTheWeightsByKey(_ key: String, _ value: Int) throws {
        let directory = try Self.checkpoint("tiny-llama") { $0[key] = value }
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect {
            try LoadedModel.load(directory: directory)
        } throws: { error in
            guard case let .invalidValue(file, foundKey, reason)? = error as? ConfigurationError else { return false }
            return file.hasSuffix("config.json") && foundKey == key && reason.contains("\(value)")
        }
    }

    @Test func llavaSizesNameTheirSection() throws {
        let directory = try Self.checkpoint("tiny-llava") { config in
            var vision = config["vision_config"] as! [String: Any]
            vision["hidden_size"] = 1_000_000_000
            config["vision_config"] = vision
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect {
            try LoadedModel.load(directory: directory)
        } throws: { error in
            guard case let .invalidValue(_, key, _)? = error as? ConfigurationError else { return false }
            return key == "vision_config.hidden_size"
        }
    }

    /// A config that does not describe its weights (7B defaults over a tiny checkpoint) reports
    /// the mismatch from the safetensors header, without model-sized placeholders first.
    @Test(arguments: ["model_type llama", "no text_config"])
    func aConfigForAnotherModelIsReportedBeforeAllocating(_ case: String) throws {
        let directory = try Self.checkpoint("tiny-llava") { config in
            if `case` == "model_type llama" {
                config["model_type"] = "llama"
                config["architectures"] = ["LlamaForCausalLM"]
            } else {
                config["text_config"] = nil
            }
        }
        defer { try? FileManager.default.removeItem(at: directory) }
        let clock = ContinuousClock()
        let start = clock.now
        #expect(throws: (any Error).self) { try LoadedModel.load(directory: directory) }
        do {
            _ = try LoadedModel.load(directory: directory)
        } catch let error as WeightMismatchError {
            #expect(error.missing.contains("model.embed_tokens.weight"))
        } catch let error as ConfigurationError {
            #expect("\(error)".contains("text_config.vocab_size"))
        }
        #expect(clock.now - start < .seconds(5))
    }

    // MARK: - Files that are not regular files

    @Test func aFIFOAsConfigIsRefusedWithoutBlocking() throws {
        let directory = try makeTemporaryDirectory("reliability")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("config.json")
        #expect(mkfifo(config.path, 0o600) == 0)
        #expect {
            try LoadedModel.load(directory: directory)
        } throws: { error in
            guard case let .cannotRead(file, reason)? = error as? ConfigurationError else { return false }
            return file == config.path && reason.contains("not a regular file")
        }
    }
}
