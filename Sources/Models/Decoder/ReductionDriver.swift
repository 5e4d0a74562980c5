import Foundation
import TensorCore
import TokenReduction

/// Per drop, in order, and per image block: the sorted indices (0..<N in the block's original
/// order) of the image tokens that survived that drop.
public typealias KeptImageTokens = [[[Int]]]

/// The one walk over a decoder's layers with visual token reduction, for inference and training
/// alike: run a layer; when the reducer drops after it, rank the image tokens, keep each block's
/// top share, and carry on with the kept rows, their positions and the blocks as they now stand.
/// The caller says how a layer runs (in place with a cache, or keeping activations for backward)
/// and which rows are the queries that rank.
public struct ReductionDriver {
    public let reducer: VisualTokenReducer
    /// Positions of the rows still in the sequence.
    public private(set) var positions: Positions
    /// The image blocks as they stand in the current sequence.
    public private(set) var blocks: [ImageBlockState]
    public private(set) var keptImageTokens: KeptImageTokens = []
    /// Tokens each layer processed, in layer order.
    public private(set) var tokensPerLayer: [Int] = []
    /// Wall seconds spent ranking image tokens.
    public private(set) var rankingSeconds = 0.0
    /// Layers (1-based counts) after which a drop happens.
    let dropLayers: [Int]

    /// A walk over a sequence at `positions` whose image tokens sit at `imageBlocks` (each ranked
    /// and cut on its own, with its own N). With `dropsEnabled` false nothing is dropped and no
    /// drop is recorded (a training sample without answers to rank by).
    public init(reducer: VisualTokenReducer, imageBlocks: [Range<Int>], positions: Positions, dropsEnabled: Bool = true) {
        self.reducer = reducer
        self.positions = positions
        blocks = imageBlocks.map { ImageBlockState(rows: $0) }
        dropLayers = dropsEnabled ? reducer.dropLayers : []
    }

    /// Runs `layerCount` layers from hidden(tokens, hidden) and returns the last one's output for
    /// the rows that reached it. `runLayer(index, input, positions)` returns the layer's output
    /// (it may be `input` itself, updated in place). `score(layer, input, positions)` is the
    /// decoder's `queryAttention` of that layer with the caller's query rows. `onDrop(layer,
    /// plan)` sees each drop's decision, after layer `layer` (0-based).
    public mutating func run(
        hidden input: Tensor, layerCount: Int,
        runLayer: (_ index: Int, _ input: Tensor, _ positions: Positions) throws -> Tensor,
        score: (_ layer: Int, _ input: Tensor, _ positions: Positions) -> [Float],
        onDrop: (_ layer: Int, _ plan: DropPlan) -> Void = { _, _ in }
    ) rethrows -> Tensor {
        var hidden = input  // (current tokens, hidden)
        var nextDrop = 0
        // FastV ranks with the real attention of the layer before its drop: keep that layer's input.
        var rankingInput: (hidden: Tensor, positions: Positions)?
        let clock = ContinuousClock()
        for layer in 0..<layerCount {
            let dropsAfterThisLayer = nextDrop < dropLayers.count && dropLayers[nextDrop] == layer + 1
            if dropsAfterThisLayer && reducer.scoring == .lastLayerAttention {
                rankingInput = (hidden.copyRows(0..<hidden.size(0)), positions)
            }
            tokensPerLayer.append(hidden.size(0))
            hidden = try runLayer(layer, hidden, positions)
            guard dropsAfterThisLayer else { continue }
            nextDrop += 1
            guard !blocks.isEmpty else {
                keptImageTokens.append([])
                continue
            }
            let rankingStart = clock.now
            let scores: [Float]  // (current tokens,) attention each row receives from the query rows
            switch reducer.scoring {
            case let .random(seed):
                scores = Self.randomScores(count: hidden.size(0), seed: seed, drop: nextDrop - 1)
            case .lastLayerAttention:
                scores = score(layer, rankingInput!.hidden, rankingInput!.positions)
            case .nextLayerQueryKey:
                scores = score(layer + 1, hidden, positions)
            }
            rankingSeconds += (clock.now - rankingStart).inSeconds
            let plan = DropPlan(scores: scores, blocks: blocks, reducer: reducer, drop: nextDrop - 1)
            keptImageTokens.append(plan.keptImageTokens)
            hidden = gatherRows(hidden, plan.keptRows)
            positions = Positions(axes: positions.axes.map { plan.positions(from: $0, mode: reducer.positionMode) })
            blocks = plan.blocks
            rankingInput = nil
            onDrop(layer, plan)
        }
        return hidden
    }
}

extension ReductionDriver {
    /// Uniform scores in [0, 1) for `count` rows at drop `drop`: a random control's ranking,
    /// the same for the same seed and drop.
    static func randomScores(count: Int, seed: UInt64, drop: Int) -> [Float] {
        var generator = SplitMix64(seed: seed &+ UInt64(drop) &* 0x9E37_79B9_7F4A_7C15)
        return (0..<count).map { _ in Float(generator.next() >> 40) / Float(1 << 24) }
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
