import Foundation
import Models
import TensorCore
import TokenReduction

/// What a generation run did, with its timings.
public struct GenerationResult: Equatable {
    /// The generated token ids, in order.
    public var tokens: [Int] = []
    public var promptTokens: Int
    public var prefillSeconds: Double = 0
    public var decodeSeconds: Double = 0
    public var stoppedAtEndOfSequence = false
    /// Per drop, per image block: sorted original indices of the surviving image tokens.
    public var keptImageTokens: [[[Int]]] = []
    /// Tokens each decoder layer processed in prefill.
    public var tokensPerLayer: [Int] = []
    /// Logits (vocab,) of the last prompt position.
    public var lastPromptLogits: [Float] = []
    /// Bytes of keys and values held after the run.
    public var keyValueCacheBytes = 0
    /// Seconds of the prefill spent ranking image tokens.
    public var rankingSeconds: Double = 0

    /// Tokens produced by decode steps per second (the first token comes from prefill).
    public var decodeTokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
}

/// Greedy decoding of a prompt of token ids (no images).
public func generateGreedy(
    model: LlamaModel, prompt: [Int], maxNewTokens: Int, stopAtEndOfSequence: Bool = true,
    onToken: ((Int) -> Void)? = nil
) throws -> GenerationResult {
    try generateGreedy(
        model: model, promptEmbeddings: model.embed(prompt), maxNewTokens: maxNewTokens,
        stopAtEndOfSequence: stopAtEndOfSequence, onToken: onToken)
}

/// Greedy decoding with a KV cache from input embeddings promptEmbeddings(promptTokens, hidden)
/// (text with image features merged in; used as the prefill's working buffer). `reducer` drops
/// image tokens of `imageBlocks` during prefill; decode positions follow its position mode.
/// Stops after `maxNewTokens`, or at an end-of-sequence id when `stopAtEndOfSequence`.
public func generateGreedy(
    model: LlamaModel, promptEmbeddings: Tensor, imageBlocks: [Range<Int>] = [],
    reducer: VisualTokenReducer = NoReduction(), maxNewTokens: Int, stopAtEndOfSequence: Bool = true,
    onToken: ((Int) -> Void)? = nil
) throws -> GenerationResult {
    let clock = ContinuousClock()
    let promptLength = promptEmbeddings.size(0)
    let cache = model.makeCache(capacity: promptLength + maxNewTokens)
    var result = GenerationResult(promptTokens: promptLength)
    let endOfSequence = Set(model.configuration.eosTokenIds)

    let prefillStart = clock.now
    let prefill = model.prefill(embeddings: promptEmbeddings, imageBlocks: imageBlocks, reducer: reducer, cache: cache)
    let lastRow = prefill.hidden.size(0) - 1
    let lastLogits = model.logits(prefill.hidden, rows: lastRow..<(lastRow + 1))  // (1, vocab)
    result.prefillSeconds = (clock.now - prefillStart).inSeconds
    result.keptImageTokens = prefill.keptImageTokens
    result.tokensPerLayer = prefill.tokensPerLayer
    result.rankingSeconds = prefill.rankingSeconds
    result.lastPromptLogits = lastLogits.toArray()
    var next = argmax(lastLogits.pointer, count: model.vocabularySize)
    withExtendedLifetime(lastLogits) {}

    let decodeStart = clock.now
    while result.tokens.count < maxNewTokens {
        result.tokens.append(next)
        onToken?(next)
        if stopAtEndOfSequence && endOfSequence.contains(next) {
            result.stoppedAtEndOfSequence = true
            break
        }
        if result.tokens.count >= maxNewTokens { break }
        let logits = try model.decodeStep(
            token: next, cache: cache, positionMode: prefill.positionMode, promptLength: promptLength,
            step: result.tokens.count - 1)  // (1, vocab)
        next = argmax(logits.pointer, count: model.vocabularySize)
        withExtendedLifetime(logits) {}
    }
    result.decodeSeconds = (clock.now - decodeStart).inSeconds
    result.keyValueCacheBytes = cache.usedBytes
    return result
}

