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
public struct GenerationResult: Equatable, Sendable {
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

    public init(promptTokens: Int) { self.promptTokens = promptTokens }

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

/// The per-sequence side of a generation: how many tokens it may produce, picking each from
/// its logits, streaming text as it becomes final, stop strings, end of sequence and
/// cancellation, and the result. `generate` drives one; a server's decode batch drives one per
/// request, so both stop and stream exactly alike.
public struct SequenceGeneration {
    public let parameters: GenerationParameters
    /// Tokens it will produce at most: `maxNewTokens`, or fewer where the context ends first.
    public let tokenLimit: Int
    /// Its timings, prefill figures and, once finished, tokens, text and stop reason.
    public var result: GenerationResult
    public private(set) var isFinished = false
    private var sampler: TokenSampler
    private var detokenizer: IncrementalDetokenizer?
    private var stopMatcher: StopStringMatcher
    private var text = ""
    private let endOfSequence: Set<Int>
    private let hasTokenizer: Bool

    /// Checks the request against the decoder: a negative count, stop strings without a
    /// tokenizer, a prompt that leaves no room in the context are errors.
    public init(parameters: GenerationParameters, promptLength: Int, decoder: any LanguageDecoder, tokenizer: Tokenizer?) throws {
        if parameters.maxNewTokens < 0 { throw GenerationError.negativeTokenCount(parameters.maxNewTokens) }
        if !parameters.stopStrings.isEmpty && tokenizer == nil { throw GenerationError.stopStringsWithoutTokenizer }
        // Prompt and generated tokens stay within the context, as transformers' max_length and
        // llama.cpp's n_ctx keep them: at most `room` new tokens, whatever was asked.
        let room = decoder.contextLength - promptLength
        if room < 1 && parameters.maxNewTokens > 0 {
            throw GenerationError.promptFillsContext(promptTokens: promptLength, context: decoder.contextLength)
        }
        self.parameters = parameters
        tokenLimit = min(parameters.maxNewTokens, room)
        sampler = try TokenSampler(parameters.sampling)
        detokenizer = tokenizer.map { IncrementalDetokenizer(tokenizer: $0) }
        stopMatcher = StopStringMatcher(stopStrings: parameters.stopStrings)
        endOfSequence = decoder.endOfSequenceIds
        hasTokenizer = tokenizer != nil
        result = GenerationResult(promptTokens: promptLength)
        if tokenLimit == 0 { finish(onEvent: nil) }
    }

    /// Picks the next token from `logits` (vocab,), streams its text to `onEvent`, and says
    /// whether another decode step is wanted (false: finished, `result` is complete). A handler
    /// returning `.stop` or a set `cancellation` ends it as cancelled.
    public mutating func accept(
        logits: UnsafeBufferPointer<Float>, cancellation: CancellationFlag? = nil,
        onEvent: ((GenerationEvent) -> GenerationControl)? = nil
    ) throws -> Bool {
        precondition(!isFinished, "a finished generation was given logits")
        // NaN weights would otherwise pick token 0 forever, or end at once with empty text.
        guard logits.allSatisfy(\.isFinite) else { throw GenerationError.nonFiniteLogits(step: result.tokens.count) }
        let next = sampler.next(logits: logits)
        result.tokens.append(next)
        let endsSequence = parameters.stopAtEndOfSequence && endOfSequence.contains(next)
        let (emitted, matchedStop) = stopMatcher.feed(detokenizer?.append(next) ?? "")
        text += emitted
        let control = onEvent?(GenerationEvent(token: next, text: emitted)) ?? .continue
        if matchedStop {
            result.stopReason = .stopString
        } else if endsSequence {
            result.stopReason = .endOfSequence
        } else if control == .stop || cancellation?.isCancelled == true {
            result.stopReason = .cancelled
        } else if result.tokens.count >= tokenLimit {
            result.stopReason = tokenLimit < parameters.maxNewTokens ? .contextFull : .maxTokens
        } else {
            return true
        }
        finish(onEvent: onEvent)
        return false
    }

    /// Ends it as cancelled before its next token (a request stopped between decode steps).
    public mutating func cancel(onEvent: ((GenerationEvent) -> GenerationControl)? = nil) {
        guard !isFinished else { return }
        result.stopReason = .cancelled
        finish(onEvent: onEvent)
    }

    /// Whatever stopping left unsaid: a held-back byte run, then text that might have begun a
    /// stop string.
    private mutating func finish(onEvent: ((GenerationEvent) -> GenerationControl)?) {
        isFinished = true
        if result.stopReason != .stopString, let last = result.tokens.last {
            let (tail, matchedStop) = stopMatcher.feed(detokenizer?.finish() ?? "")
            if matchedStop { result.stopReason = .stopString }
            let held = tail + (matchedStop ? "" : stopMatcher.finish())
            text += held
            if !held.isEmpty { _ = onEvent?(GenerationEvent(token: last, text: held)) }
        }
        if hasTokenizer { result.text = text }
    }
}

/// Generation with a KV cache from input embeddings promptEmbeddings(promptTokens, hidden) (text
/// with image features merged in; used as the prefill's working buffer) at `positions` (0..<promptTokens
/// by default). `reducer` drops image
/// tokens of `imageBlocks` during prefill; decode positions follow its position mode. Tokens are
/// chosen by `parameters.sampling` (greedy by default); with a `tokenizer` the text is streamed
/// to `onEvent` as it becomes final and stop strings apply. `onEvent` returning `.stop`, or
/// `cancellation` being set, ends the run before the next decode step.
public func generate(
    decoder: any LanguageDecoder, promptEmbeddings: Tensor, positions: Positions? = nil, imageBlocks: [Range<Int>] = [],
    reducer: VisualTokenReducer = NoReduction(), parameters: GenerationParameters, tokenizer: Tokenizer? = nil,
    cancellation: CancellationFlag? = nil, onEvent: ((GenerationEvent) -> GenerationControl)? = nil
) throws -> GenerationResult {
    let promptLength = promptEmbeddings.size(0)
    var sequence = try SequenceGeneration(parameters: parameters, promptLength: promptLength, decoder: decoder, tokenizer: tokenizer)
    let clock = ContinuousClock()
    let cache = decoder.makeCache(capacity: promptLength + sequence.tokenLimit)

    let prefillStart = clock.now
    let prefill = decoder.prefill(embeddings: promptEmbeddings, imageBlocks: imageBlocks, reducer: reducer, cache: cache, positions: positions)
    var logits = decoder.logits(prefill.hidden, rows: (prefill.hidden.size(0) - 1)..<prefill.hidden.size(0))  // (1, vocab)
    sequence.result.record(prefill, seconds: (clock.now - prefillStart).inSeconds, lastPromptLogits: logits)

    let decodeStart = clock.now
    while !sequence.isFinished {
        let wantsMore = try logits.withPointer { pointer in
            try sequence.accept(logits: UnsafeBufferPointer(start: pointer, count: logits.count), cancellation: cancellation, onEvent: onEvent)
        }
        guard wantsMore else { break }
        logits = try decoder.decodeStep(token: sequence.result.tokens.last!, cache: cache, after: prefill, step: sequence.result.tokens.count - 1)
    }
    sequence.result.decodeSeconds = (clock.now - decodeStart).inSeconds
    sequence.result.keyValueCacheBytes = cache.usedBytes
    return sequence.result
}

extension GenerationResult {
    /// Takes the prefill's figures: kept tokens, tokens per layer, ranking time, its wall time
    /// and the logits (1, vocab) of the last prompt position.
    public mutating func record(_ prefill: PrefillResult, seconds: Double, lastPromptLogits logits: Tensor) {
        prefillSeconds = seconds
        keptImageTokens = prefill.keptImageTokens
        tokensPerLayer = prefill.tokensPerLayer
        rankingSeconds = prefill.rankingSeconds
        lastPromptLogits = logits.toArray()
    }
}

/// Greedy decoding of a prompt of token ids (no images).
public func generateGreedy(
    model: any LanguageDecoder, prompt: [Int], maxNewTokens: Int, stopAtEndOfSequence: Bool = true
) throws -> GenerationResult {
    try generateGreedy(model: model, promptEmbeddings: model.embed(prompt), maxNewTokens: maxNewTokens, stopAtEndOfSequence: stopAtEndOfSequence)
}

/// Greedy decoding from input embeddings with `reducer` (see `generate`).
public func generateGreedy(
    model: any LanguageDecoder, promptEmbeddings: Tensor, positions: Positions? = nil, imageBlocks: [Range<Int>] = [],
    reducer: VisualTokenReducer = NoReduction(), maxNewTokens: Int, stopAtEndOfSequence: Bool = true
) throws -> GenerationResult {
    try generate(
        decoder: model, promptEmbeddings: promptEmbeddings, positions: positions, imageBlocks: imageBlocks, reducer: reducer,
        parameters: GenerationParameters(maxNewTokens: maxNewTokens, stopAtEndOfSequence: stopAtEndOfSequence))
}
