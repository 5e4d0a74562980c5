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
        let hidden = try embed([token])  // (1, hidden)
        let template = prefill.positions
        for layer in 0..<layerCount {
            let position = prefill.positionMode == .reindex ? cache.layers[layer].length : prefill.continuationPosition + step
            runLayer(layer, hidden: hidden, positions: template.token(at: position), cache: cache.layers[layer])
        }
        return logits(hidden, rows: 0..<1)
    }
}
