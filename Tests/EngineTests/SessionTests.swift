import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction

/// The inference session on the tiny LLaVA: requests as messages, raw prompts or bytes; the
/// token stream, stop strings, cancellation and sampling of one generation.
@Suite struct SessionTests {
    static let session = Result { try InferenceSession(directory: Fixtures.url("tiny-llava")) }
    static let reference = Result { try SafeTensorsFile(path: Fixtures.url("tiny-llava/reference-image.safetensors").path) }
    let image = Fixtures.url("images/chelsea.jpg")
    let question = "What is shown in this image?"

    func prompt() throws -> PreparedPrompt {
        try Self.session.get().prepare(.messages([ChatMessage(role: .user, parts: [.image(.file(image)), .text(question)])]))
    }

    @Test func messagesRawPromptsAndImageBytesPrepareTheSameInput() throws {
        let session = try Self.session.get()
        let fromMessages = try prompt()
        #expect(fromMessages.inputIds == (try Self.reference.get().integers("input_ids")))
        let raw = try session.prepare(.raw("USER: <image>\n\(question) ASSISTANT:", images: [.file(image)]))
        let bytes = try session.prepare(.raw("USER: <image>\n\(question) ASSISTANT:", images: [.bytes(try Data(contentsOf: image), name: "upload")]))
        #expect(raw.inputIds == fromMessages.inputIds && bytes.inputIds == fromMessages.inputIds)
        #expect(maxAbsoluteDifference(bytes.imageFeatures[0], fromMessages.imageFeatures[0]) == 0)
        #expect(throws: (any Error).self) { try session.prepare(.raw("<image>", images: [.bytes(Data([1, 2, 3]), name: "upload")])) }
        #expect(throws: PipelineError.promptTooLong(tokens: 4097, imageTokens: 0, context: 4096)) {
            try session.prepare(.tokenIds(Array(repeating: 1, count: 4097)))
        }
    }

    @Test func temperatureZeroIsGreedyAndMatchesTransformers() throws {
        let session = try Self.session.get()
        let prompt = try prompt()
        let greedy = try session.generate(prompt, reducer: NoReduction(), parameters: GenerationParameters(maxNewTokens: 16, stopAtEndOfSequence: false))
        #expect(greedy.tokens == (try Self.reference.get().integers("greedy_tokens")))
        // A seed does not change greedy decoding.
        let seeded = try session.generate(
            prompt, reducer: NoReduction(),
            parameters: GenerationParameters(maxNewTokens: 16, stopAtEndOfSequence: false, sampling: SamplingParameters(temperature: 0, seed: 3)))
        #expect(seeded.tokens == greedy.tokens)
    }

    @Test func seededSamplingIsReproducible() throws {
        let session = try Self.session.get()
        let prompt = try prompt()
        func sample(seed: UInt64) throws -> [Int] {
            let sampling = SamplingParameters(temperature: 1.5, topK: 50, topP: 0.95, seed: seed)
            return try session.generate(
                prompt, reducer: NoReduction(), parameters: GenerationParameters(maxNewTokens: 12, stopAtEndOfSequence: false, sampling: sampling)
            ).tokens
        }
        let first = try sample(seed: 11), again = try sample(seed: 11)
        #expect(first == again && first.count == 12)
        let others = try (12..<16).map { try sample(seed: $0) }
        #expect(others.contains { $0 != first }, "four other seeds all gave \(first)")
    }

    @Test func streamedTextIsTheFinalTextAndTheDecodedTokens() throws {
        let session = try Self.session.get()
        var streamed = "", events = 0
        let result = try session.generate(
            try prompt(), reducer: PyramidDropReducer(schedule: try .paperDefault(layerCount: 8)),
            parameters: GenerationParameters(maxNewTokens: 24, stopAtEndOfSequence: false)
        ) { event in
            streamed += event.text
            events += 1
            return .continue
        }
        let decoded = session.tokenizer!.decode(result.tokens, skipSpecialTokens: true)
        #expect(events >= result.tokens.count && result.stopReason == .maxTokens)
        #expect(Array(streamed.unicodeScalars) == Array((result.text ?? "").unicodeScalars))
        #expect(Array(streamed.unicodeScalars) == Array(decoded.unicodeScalars))
    }

    @Test func aStopStringEndsTheTextBeforeIt() throws {
        let session = try Self.session.get()
        let prompt = try prompt()
        let full = try session.generate(prompt, reducer: NoReduction(), parameters: GenerationParameters(maxNewTokens: 16, stopAtEndOfSequence: false))
        let text = try #require(full.text)
        let scalars = Array(text.unicodeScalars)
        try #require(scalars.count >= 8, "the tiny model's answer is too short to cut: \(text.debugDescription)")
        let stop = String(String.UnicodeScalarView(scalars[(scalars.count / 2)..<(scalars.count / 2 + 3)]))
        let cut = try session.generate(
            prompt, reducer: NoReduction(), parameters: GenerationParameters(maxNewTokens: 16, stopAtEndOfSequence: false, stopStrings: [stop]))
        let expected = String(text[..<text.range(of: stop)!.lowerBound])
        #expect(cut.stopReason == .stopString)
        #expect(Array((cut.text ?? "").unicodeScalars) == Array(expected.unicodeScalars))
        #expect(cut.tokens.count <= full.tokens.count && Array(full.tokens.prefix(cut.tokens.count)) == cut.tokens)
    }

    @Test func cancellationStopsWithinOneToken() throws {
        let session = try Self.session.get()
        let prompt = try prompt()
        let parameters = GenerationParameters(maxNewTokens: 16, stopAtEndOfSequence: false)
        var seen = 0
        let stopped = try session.generate(prompt, reducer: NoReduction(), parameters: parameters) { _ in
            seen += 1
            return seen == 3 ? .stop : .continue
        }
        #expect(stopped.tokens.count == 3 && stopped.stopReason == .cancelled)
        // Another thread's flag: set while the second token is handled, no decode step follows.
        let flag = CancellationFlag()
        var handled = 0
        let flagged = try session.generate(prompt, reducer: NoReduction(), parameters: parameters, cancellation: flag) { _ in
            handled += 1
            if handled == 2 { flag.cancel() }
            return .continue
        }
        #expect(flagged.tokens.count == 2 && flagged.stopReason == .cancelled)
    }

    @Test func textOnlyCheckpointsTakeTokenIdsAndRefuseImages() throws {
        let session = try InferenceSession(directory: Fixtures.url("tiny-llama"))
        #expect(session.visionLanguageModel == nil && session.imageProcessor == nil)
        let prompt = try session.prepare(.tokenIds([1, 17, 300, 42]))
        let result = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 3, stopAtEndOfSequence: false)
        #expect(result.tokens.count == 3 && result.text == nil)
        #expect(throws: PipelineError.notAVisionLanguageModel(directory: Fixtures.url("tiny-llama").path)) {
            try session.prepare(.raw("<image>", images: [.file(image)]))
        }
    }

    @Test func theRandomControlKeepsASeededRandomSubsetOfPyramidDropsSize() throws {
        let session = try Self.session.get()
        let prompt = try prompt()
        func kept(_ request: ReductionRequest) throws -> KeptImageTokens {
            try session.generate(prompt, reducer: try session.reducer(request, for: prompt), maxNewTokens: 1).keptImageTokens
        }
        var random = ReductionRequest()
        random.kind = .random
        random.randomSeed = 5
        let first = try kept(random), again = try kept(random)
        let pyramid = try kept(ReductionRequest())
        #expect(first == again && first.map { $0[0].count } == pyramid.map { $0[0].count } && first.map { $0[0].count } == [288, 144, 72])
        random.randomSeed = 6
        #expect(try kept(random) != first && first != pyramid)
        // Each drop keeps a subset of the previous one, spread over the whole block.
        #expect(Set(first[1][0]).isSubset(of: Set(first[0][0])) && first[0][0].first! < 100 && first[0][0].last! > 476)
        random.kind = .pdrop
        #expect(throws: ReductionSettingError.self) { try kept(random) }
    }
}
