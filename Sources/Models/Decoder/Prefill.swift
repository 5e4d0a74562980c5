import Foundation
import TensorCore
import TokenReduction

/// What a prefill with visual token reduction leaves behind.
public struct PrefillResult {
    /// (remaining tokens, hidden): the last layer's output for the tokens that reached it.
    public let hidden: Tensor
    /// Rotary positions of the remaining tokens.
    public let positions: Positions
    public let keptImageTokens: KeptImageTokens
    /// Tokens of the prompt before any drop.
    public let promptLength: Int
    /// The position generated text continues from when positions are preserved (the prompt's
    /// length for 1-D positions).
    public let continuationPosition: Int
    public let positionMode: PositionMode
    /// Tokens each layer processed (and holds in its cache).
    public let tokensPerLayer: [Int]
    /// Wall seconds spent ranking image tokens (part of the prefill).
    public let rankingSeconds: Double
}

extension LanguageDecoder {
    /// Prefill of embeddings(tokens, hidden) in which `reducer` drops image tokens between layers.
    /// `imageBlocks` are the rows of each image block; the query row is the last prompt token.
    /// `cache` receives each layer's own keys and values, so layers after a drop hold fewer
    /// entries (the pyramid cache). `positions` default to 0..<tokens on every axis.
    /// `observe(name, layer, tensor)` sees each layer's output as "layer_output".
    public func prefill(
        embeddings: Tensor, imageBlocks: [Range<Int>], reducer: VisualTokenReducer, cache: KVCache,
        positions: Positions? = nil, observe: ((String, Int, Tensor) -> Void)? = nil
    ) -> PrefillResult {
        let promptLength = embeddings.size(0)
        let start = positions ?? .sequential(promptLength, axisCount: positionAxes)
        precondition(
            positionAxes == 1 || reducer.dropLayers.isEmpty || reducer.positionMode == .preserve,
            "\(positionAxes)-axis positions are preserved after a drop (PYRAMIDDROP.md §9); ReductionRequest refuses reindex")
        var driver = ReductionDriver(reducer: reducer, imageBlocks: imageBlocks, positions: start)
        let hidden = driver.run(
            hidden: embeddings, layerCount: layerCount,
            runLayer: { layer, hidden, positions in
                runLayer(layer, hidden: hidden, positions: positions, cache: cache.layers[layer])
                observe?("layer_output", layer, hidden)
                return hidden
            },
            score: { layer, input, positions in
                queryAttention(layer: layer, input: input, positions: positions, queryRows: [input.size(0) - 1])
            })
        return PrefillResult(
            hidden: hidden, positions: driver.positions, keptImageTokens: driver.keptImageTokens, promptLength: promptLength,
            continuationPosition: start.next, positionMode: reducer.positionMode, tokensPerLayer: driver.tokensPerLayer,
            rankingSeconds: driver.rankingSeconds)
    }

    /// All layers over hidden(tokens, hidden) in place, without reduction.
    public func runLayers(
        hidden: Tensor, positions: Positions, cache: KVCache, observe: ((String, Int, Tensor) -> Void)? = nil
    ) {
        for index in 0..<layerCount {
            runLayer(index, hidden: hidden, positions: positions, cache: cache.layers[index])
            observe?("layer_output", index, hidden)
        }
    }

    /// One decode step after `prefill`: embeds `token` and runs every layer at its own position
    /// (reindex: the layer's cache length; preserve: the continuation position + `step`).
    /// Returns logits (1, vocab).
    public func decodeStep(token: Int, cache: KVCache, after prefill: PrefillResult, step: Int) throws -> Tensor {
        try decodeStep([DecodingSequence(token: token, cache: cache, prefill: prefill, step: step)])
    }

    /// One decode step of several sequences at once, each with its own pyramid cache, lengths
    /// and positions (see the single-sequence `decodeStep`): every weight is read once for all.
    /// Returns logits (sequences, vocab), row s for `sequences[s]`; each row equals what that
    /// sequence's own decode step gives.
    public func decodeStep(_ sequences: [DecodingSequence]) throws -> Tensor {
        let hidden = try embed(sequences.map(\.token))  // (sequences, hidden)
        for layer in 0..<layerCount {
            let caches = sequences.map { $0.cache.layers[layer] }
            let rows = sequences.map { sequence in
                sequence.prefill.positions.token(at: sequence.prefill.positionMode == .reindex
                    ? sequence.cache.layers[layer].length : sequence.prefill.continuationPosition + sequence.step)
            }
            let positions = Positions(axes: (0..<rows[0].axes.count).map { axis in rows.map { $0.axes[axis][0] } })
            runLayer(layer, hidden: hidden, positions: positions, caches: caches)
        }
        return logits(hidden, rows: 0..<sequences.count)
    }
}

/// One sequence's part of a decode step: the token it feeds, its cache, the prefill it continues
/// and how many tokens it has decoded since (0 for the first decode step).
public struct DecodingSequence {
    public let token: Int
    public let cache: KVCache
    public let prefill: PrefillResult
    public let step: Int

    public init(token: Int, cache: KVCache, prefill: PrefillResult, step: Int) {
        self.token = token
        self.cache = cache
        self.prefill = prefill
        self.step = step
    }
}
