import Foundation
import Models
import TensorCore
import Tokenizer
import TokenReduction

/// What ends a generation.
public enum StopReason: String, Codable, Sendable {
    /// The model produced an end-of-sequence id.
    case endOfSequence
    /// `maxNewTokens` were produced.
    case maxTokens
    /// The text reached one of the stop strings.
    case stopString
    /// The caller cancelled (the handler returned `.stop`, or the cancellation flag was set).
    case cancelled
    /// Prompt and generated tokens filled the model's context (`max_position_embeddings`) before
    /// `maxNewTokens` were produced (llama.cpp stops there too; nothing is generated past it).
    case contextFull
}

/// How long to generate and how to pick tokens.
public struct GenerationParameters: Equatable, Sendable {
    public var maxNewTokens: Int
    /// Stop at an end-of-sequence id (llama.cpp's `--ignore-eos` turns it off).
    public var stopAtEndOfSequence: Bool
    /// Text that ends generation; it is left out of the text (OpenAI's `stop`). Needs a tokenizer.
    public var stopStrings: [String]
    public var sampling: SamplingParameters

    public init(maxNewTokens: Int = 64, stopAtEndOfSequence: Bool = true, stopStrings: [String] = [], sampling: SamplingParameters = .init()) {
        self.maxNewTokens = maxNewTokens
        self.stopAtEndOfSequence = stopAtEndOfSequence
        self.stopStrings = stopStrings
        self.sampling = sampling
    }
}

/// One generated token and the text that became final with it ("" while a character or a
/// possible stop string is incomplete).
public struct GenerationEvent: Sendable {
    public let token: Int
    public let text: String
}

/// What a handler tells the generator after each token.
public enum GenerationControl: Sendable {
    case `continue`, stop
}

/// A flag another thread (a server's request handler) sets to stop a generation; checked before
/// every decode step, so at most one more token follows.
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false

    public init() {}
    public func cancel() { lock.withLock { cancelled = true } }
    public var isCancelled: Bool { lock.withLock { cancelled } }
}

/// What a generation run did, with its timings.
public struct GenerationResult: Equatable {
    /// The generated token ids, in order.
    public var tokens: [Int] = []
    /// Their text (without a stop string that ended it), when there is a tokenizer.
    public var text: String?
    public var stopReason: StopReason = .maxTokens
    public var promptTokens: Int
    public var prefillSeconds: Double = 0
    public var decodeSeconds: Double = 0
    public var keptImageTokens: KeptImageTokens = []
    /// Tokens each decoder layer processed in prefill.
    public var tokensPerLayer: [Int] = []
    /// Logits (vocab,) of the last prompt position.
    public var lastPromptLogits: [Float] = []
    /// Bytes of keys and values held after the run.
    public var keyValueCacheBytes = 0
    /// Seconds of the prefill spent ranking image tokens.
    public var rankingSeconds: Double = 0

    public var stoppedAtEndOfSequence: Bool { stopReason == .endOfSequence }

    /// Tokens produced by decode steps per second (the first token comes from prefill).
    public var decodeTokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
}

/// Errors of a generation request.
public enum GenerationError: Error, Equatable, CustomStringConvertible {
    case stopStringsWithoutTokenizer
    case negativeTokenCount(Int)
    case promptFillsContext(promptTokens: Int, context: Int)
    /// The logits of generated token `step` (0: the prefill's) hold NaN or infinity.
    case nonFiniteLogits(step: Int)

    public var description: String {
        switch self {
        case let .promptFillsContext(promptTokens, context):
            return "the prompt is \(promptTokens) tokens, which leaves no room in the model's context of \(context) for a generated token"
        case let .nonFiniteLogits(step):
            return "the model's output scores for generated token \(step + 1) are not finite numbers (NaN or infinity); "
                + "the checkpoint's weights probably hold non-finite values (a broken conversion or a diverged training run)"
        case .stopStringsWithoutTokenizer: return "stop strings need the checkpoint's tokenizer.json to read the generated text"
        case let .negativeTokenCount(count): return "the number of tokens to generate must not be negative, got \(count)"
        }
    }
}

/// Generation with a KV cache from input embeddings promptEmbeddings(promptTokens, hidden) (text
/// with image features merged in; used as the prefill's working buffer). `reducer` drops image
/// tokens of `imageBlocks` during prefill; decode positions follow its position mode. Tokens are
/// chosen by `parameters.sampling` (greedy by default); with a `tokenizer` the text is streamed
/// to `onEvent` as it becomes final and stop strings apply. `onEvent` returning `.stop`, or
/// `cancellation` being set, ends the run before the next decode step.
public func generate(
    decoder: any LanguageDecoder, promptEmbeddings: Tensor, imageBlocks: [Range<Int>] = [],
    reducer: VisualTokenReducer = NoReduction(), parameters: GenerationParameters, tokenizer: Tokenizer? = nil,
    cancellation: CancellationFlag? = nil, onEvent: ((GenerationEvent) -> GenerationControl)? = nil
) throws -> GenerationResult {
    if parameters.maxNewTokens < 0 { throw GenerationError.negativeTokenCount(parameters.maxNewTokens) }
    if !parameters.stopStrings.isEmpty && tokenizer == nil { throw GenerationError.stopStringsWithoutTokenizer }
    var sampler = try TokenSampler(parameters.sampling)
    var detokenizer = tokenizer.map { IncrementalDetokenizer(tokenizer: $0) }
    var stopMatcher = StopStringMatcher(stopStrings: parameters.stopStrings)
    let clock = ContinuousClock()
    let promptLength = promptEmbeddings.size(0)
    // Prompt and generated tokens stay within the context, as transformers' max_length and
    // llama.cpp's n_ctx keep them: at most `room` new tokens, whatever was asked.
    let room = decoder.contextLength - promptLength
    if room < 1 && parameters.maxNewTokens > 0 {
        throw GenerationError.promptFillsContext(promptTokens: promptLength, context: decoder.contextLength)
    }
    let newTokens = min(parameters.maxNewTokens, room)
    let cache = decoder.makeCache(capacity: promptLength + newTokens)
    var result = GenerationResult(promptTokens: promptLength)
    var text = ""

    let prefillStart = clock.now
    let prefill = decoder.prefill(embeddings: promptEmbeddings, imageBlocks: imageBlocks, reducer: reducer, cache: cache)
    let lastRow = prefill.hidden.size(0) - 1
    var logits = decoder.logits(prefill.hidden, rows: lastRow..<(lastRow + 1))  // (1, vocab)
    result.prefillSeconds = (clock.now - prefillStart).inSeconds
    result.keptImageTokens = prefill.keptImageTokens
    result.tokensPerLayer = prefill.tokensPerLayer
    result.rankingSeconds = prefill.rankingSeconds
    result.lastPromptLogits = logits.toArray()

    let endOfSequence = decoder.endOfSequenceIds
    let decodeStart = clock.now
    while result.tokens.count < newTokens {
        let next = try logits.withPointer { pointer in
            let row = UnsafeBufferPointer(start: pointer, count: logits.count)
            // NaN weights would otherwise pick token 0 forever, or end at once with empty text.
            guard row.allSatisfy(\.isFinite) else { throw GenerationError.nonFiniteLogits(step: result.tokens.count) }
            return sampler.next(logits: row)
        }
        result.tokens.append(next)
        let endsSequence = parameters.stopAtEndOfSequence && endOfSequence.contains(next)
        let (emitted, matchedStop) = stopMatcher.feed(detokenizer?.append(next) ?? "")
        text += emitted
        let control = onEvent?(GenerationEvent(token: next, text: emitted)) ?? .continue
        if matchedStop { result.stopReason = .stopString; break }
        if endsSequence { result.stopReason = .endOfSequence; break }
        if control == .stop || cancellation?.isCancelled == true { result.stopReason = .cancelled; break }
        if result.tokens.count >= newTokens {
            if newTokens < parameters.maxNewTokens { result.stopReason = .contextFull }
            break
        }
        logits = try decoder.decodeStep(token: next, cache: cache, after: prefill, step: result.tokens.count - 1)
    }
    // Whatever stopping left unsaid: a held-back byte run, then text that might have begun a stop string.
    if result.stopReason != .stopString, let last = result.tokens.last {
        let (tail, matchedStop) = stopMatcher.feed(detokenizer?.finish() ?? "")
        if matchedStop { result.stopReason = .stopString }
        let held = tail + (matchedStop ? "" : stopMatcher.finish())
        text += held
        if !held.isEmpty { _ = onEvent?(GenerationEvent(token: last, text: held)) }
    }
    result.decodeSeconds = (clock.now - decodeStart).inSeconds
    result.keyValueCacheBytes = cache.usedBytes
    if tokenizer != nil { result.text = text }
    return result
}

/// Greedy decoding of a prompt of token ids (no images).
public func generateGreedy(
    model: any LanguageDecoder, prompt: [Int], maxNewTokens: Int, stopAtEndOfSequence: Bool = true
) throws -> GenerationResult {
    try generateGreedy(model: model, promptEmbeddings: model.embed(prompt), maxNewTokens: maxNewTokens, stopAtEndOfSequence: stopAtEndOfSequence)
}

/// Greedy decoding from input embeddings with `reducer` (see `generate`).
public func generateGreedy(
    model: any LanguageDecoder, promptEmbeddings: Tensor, imageBlocks: [Range<Int>] = [],
    reducer: VisualTokenReducer = NoReduction(), maxNewTokens: Int, stopAtEndOfSequence: Bool = true
) throws -> GenerationResult {
    try generate(
        decoder: model, promptEmbeddings: promptEmbeddings, imageBlocks: imageBlocks, reducer: reducer,
        parameters: GenerationParameters(maxNewTokens: maxNewTokens, stopAtEndOfSequence: stopAtEndOfSequence))
}
