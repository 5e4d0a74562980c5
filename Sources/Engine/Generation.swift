import Foundation
import Models
import TensorCore

/// What a generation run did, with its timings.
public struct GenerationResult: Codable, Equatable {
    /// The generated token ids, in order.
    public var tokens: [Int]
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Tokens produced by decode steps per second (the first token comes from prefill).
    public var decodeTokensPerSecond: Double {
        tokens.count > 1 && decodeSeconds > 0 ? Double(tokens.count - 1) / decodeSeconds : 0
    }
    public var stoppedAtEndOfSequence: Bool
}

/// Greedy decoding with a KV cache: one prefill over the prompt, then one decode step per
/// token. Stops after `maxNewTokens`, or at an end-of-sequence id when `stopAtEndOfSequence`.
public func generateGreedy(
    model: LlamaModel, prompt: [Int], maxNewTokens: Int, stopAtEndOfSequence: Bool = true,
    onToken: ((Int) -> Void)? = nil
) throws -> GenerationResult {
    try generateGreedy(
        model: model, promptEmbeddings: model.embed(prompt), maxNewTokens: maxNewTokens,
        stopAtEndOfSequence: stopAtEndOfSequence, onToken: onToken)
}

/// Greedy decoding from input embeddings promptEmbeddings(promptTokens, hidden), e.g. text with
/// image features merged in. The tensor is used as the prefill's working buffer.
public func generateGreedy(
    model: LlamaModel, promptEmbeddings hidden: Tensor, maxNewTokens: Int, stopAtEndOfSequence: Bool = true,
    onToken: ((Int) -> Void)? = nil
) throws -> GenerationResult {
    let clock = ContinuousClock()
    let promptCount = hidden.size(0)
    let cache = model.makeCache(capacity: promptCount + maxNewTokens)
    var result = GenerationResult(tokens: [], promptTokens: promptCount, prefillSeconds: 0, decodeSeconds: 0, stoppedAtEndOfSequence: false)
    if maxNewTokens <= 0 { return result }
    let endOfSequence = Set(model.configuration.eosTokenIds)

    let prefillStart = clock.now
    model.runLayers(hidden: hidden, positions: Array(0..<promptCount), cache: cache)
    let lastLogits = model.logits(hidden, rows: (promptCount - 1)..<promptCount)  // (1, vocab)
    var next = withExtendedLifetime(lastLogits) { argmax(lastLogits.pointer, count: model.vocabularySize) }
    result.prefillSeconds = seconds(clock.now - prefillStart)

    let decodeStart = clock.now
    while true {
        result.tokens.append(next)
        onToken?(next)
        if stopAtEndOfSequence && endOfSequence.contains(next) {
            result.stoppedAtEndOfSequence = true
            break
        }
        if result.tokens.count >= maxNewTokens { break }
        let position = cache.layers[0].length
        let step = try model.embed([next])  // (1, hidden)
        model.runLayers(hidden: step, positions: [position], cache: cache)
        let logits = model.logits(step, rows: 0..<1)  // (1, vocab)
        next = withExtendedLifetime(logits) { argmax(logits.pointer, count: model.vocabularySize) }
    }
    result.decodeSeconds = seconds(clock.now - decodeStart)
    return result
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
}
