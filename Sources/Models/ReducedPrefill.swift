import Foundation
import TensorCore
import TokenReduction

/// What a prefill with visual token reduction leaves behind.
public struct PrefillResult {
    /// (remaining tokens, hidden): the last layer's output for the tokens that reached it.
    public let hidden: Tensor
    /// Rotary positions of the remaining tokens.
    public let positions: [Int]
    /// For each drop, in order, and each image block: the sorted indices (0..<N in the block's
    /// original order) of the image tokens that survived it.
    public let keptImageTokens: [[[Int]]]
    /// Tokens of the prompt before any drop.
    public let promptLength: Int
    public let positionMode: PositionMode
    /// Tokens each layer processed (and holds in its cache).
    public let tokensPerLayer: [Int]
    /// Wall seconds spent ranking image tokens (part of the prefill).
    public let rankingSeconds: Double
}

extension LlamaModel {
    /// Prefill of embeddings(tokens, hidden) in which `reducer` drops image tokens between layers.
    /// `imageBlocks` are the rows of each image block (ranked and cut on its own, with its own N);
    /// the query row is the last prompt token. `cache` receives each layer's own keys and values,
    /// so layers after a drop hold fewer entries (the pyramid cache).
    public func prefill(
        embeddings: Tensor, imageBlocks: [Range<Int>], reducer: VisualTokenReducer, cache: KVCache,
        observe: ((String, Int, Tensor) -> Void)? = nil
    ) -> PrefillResult {
        let promptLength = embeddings.size(0)
        var hidden = embeddings
        var positions = Array(0..<promptLength)
        var blocks = imageBlocks.map { ImageBlockState(rows: $0) }
        var keptImageTokens: [[[Int]]] = []
        var tokensPerLayer: [Int] = []
        let dropLayers = reducer.dropLayers
        var nextDrop = 0
        // FastV ranks with the real attention of the layer before its drop: keep that layer's input.
        var lastLayerInput: (hidden: Tensor, positions: [Int])?
        let clock = ContinuousClock()
        var rankingSeconds = 0.0

        for layer in layers.indices {
            let dropsAfterThisLayer = nextDrop < dropLayers.count && dropLayers[nextDrop] == layer + 1
            if dropsAfterThisLayer && reducer.scoring == .lastLayerAttention {
                lastLayerInput = (hidden.copyRows(0..<hidden.size(0)), positions)
            }
            tokensPerLayer.append(hidden.size(0))
            runLayer(layer, hidden: hidden, positions: positions, cache: cache.layers[layer])
            observe?("layer_output", layer, hidden)
            guard dropsAfterThisLayer, !blocks.isEmpty else {
                if dropsAfterThisLayer { keptImageTokens.append([]); nextDrop += 1 }
                continue
            }

            let queryRows = [hidden.size(0) - 1]
            var scores: [Float] = []  // (current tokens,) attention each key receives from the query rows
            let rankingStart = clock.now
            if reducer.scoring == .lastLayerAttention, let input = lastLayerInput {
                scores = queryAttention(layer: layer, input: input.hidden, positions: input.positions, queryRows: queryRows)
            } else {
                scores = queryAttention(layer: layer + 1, input: hidden, positions: positions, queryRows: queryRows)
            }
            rankingSeconds += (clock.now - rankingStart).inSeconds
            let plan = DropPlan(scores: scores, blocks: blocks, reducer: reducer, drop: nextDrop)
            keptImageTokens.append(plan.keptImageTokens)
            hidden = gatherRows(hidden, plan.keptRows)
            positions = plan.positions(from: positions, mode: reducer.positionMode)
            blocks = plan.blocks
            lastLayerInput = nil
            nextDrop += 1
        }
        return PrefillResult(
            hidden: hidden, positions: positions, keptImageTokens: keptImageTokens, promptLength: promptLength,
            positionMode: reducer.positionMode, tokensPerLayer: tokensPerLayer, rankingSeconds: rankingSeconds)
    }

    /// Attention that each key row receives from `queryRows`, as PyramidDrop ranks: layer
    /// `layer`'s input norm, query and key projections applied to input(tokens, hidden), RoPE at
    /// `positions`, softmax over all keys with the causal mask in fp32, averaged over heads and
    /// query rows. Only the query rows are projected and scored: no (tokens × tokens) matrix.
    public func queryAttention(layer index: Int, input: Tensor, positions: [Int], queryRows: [Int]) -> [Float] {
        let weights = layers[index]
        let c = configuration
        let tokens = input.size(0), width = hiddenSize, heads = c.numAttentionHeads, headDim = c.headDim
        let groupSize = heads / c.numKeyValueHeads
        let normed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        rmsNormForward(normed.pointer, input.pointer, weights.inputNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        let keys = weights.keyProjection(normed)  // (tokens, kvHeads·headDim)
        rotary.apply(keys.pointer, tokens: tokens, heads: c.numKeyValueHeads, positions: positions)
        let queries = weights.queryProjection(gatherRows(normed, queryRows))  // (rows, heads·headDim)
        rotary.apply(queries.pointer, tokens: queryRows.count, heads: heads, positions: queryRows.map { positions[$0] })

        let rowScores = Tensor(shape: [queryRows.count, tokens])  // (rows, tokens) for one head
        var total = [Float](repeating: 0, count: tokens)  // (tokens,)
        let weight = 1 / Float(heads * queryRows.count)
        for head in 0..<heads {
            BLAS.gemm(
                transposeA: false, transposeB: true, m: queryRows.count, n: tokens, k: headDim, alpha: 1 / Float(headDim).squareRoot(),
                a: queries.pointer + head * headDim, lda: heads * headDim,
                b: keys.pointer + (head / groupSize) * headDim, ldb: c.numKeyValueHeads * headDim,
                beta: 0, c: rowScores.pointer, ldc: tokens)
            softmaxRowsForward(rowScores.pointer, rows: queryRows.count, columns: tokens) { queryRows[$0] + 1 }
            for row in 0..<queryRows.count {
                let probabilities = rowScores.pointer + row * tokens
                for key in 0..<tokens { total[key] += probabilities[key] * weight }
            }
        }
        withExtendedLifetime((normed, keys, queries, rowScores)) {}
        return total
    }

    /// One decode step: embeds `token`, runs every layer at its own position (reindex: the
    /// layer's cache length; preserve: the full prompt length + `step`), returns logits (1, vocab).
    public func decodeStep(token: Int, cache: KVCache, positionMode: PositionMode, promptLength: Int, step: Int) throws -> Tensor {
        let hidden = try embed([token])  // (1, hidden)
        for layer in layers.indices {
            let position = positionMode == .reindex ? cache.layers[layer].length : promptLength + step
            runLayer(layer, hidden: hidden, positions: [position], cache: cache.layers[layer])
        }
        return logits(hidden, rows: 0..<1)
    }
}

/// rows(indices.count, columns) = source[indices] for a 2-D source.
public func gatherRows(_ source: Tensor, _ indices: [Int]) -> Tensor {
    let columns = source.size(1)
    let result = Tensor(shape: [indices.count, columns])
    for (row, index) in indices.enumerated() {
        (result.pointer + row * columns).update(from: source.pointer + index * columns, count: columns)
    }
    return result
}
