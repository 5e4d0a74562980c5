/// An image block as it stands in the current sequence during prefill.
public struct ImageBlockState: Equatable, Sendable {
    /// First row of the block in the current sequence.
    public var start: Int
    /// Original index (0..<N) of each row still in the block, increasing.
    public var originalIndices: [Int]
    /// N: the block's size before any drop (its budget is a fraction of this).
    public let originalCount: Int

    public init(start: Int, originalIndices: [Int], originalCount: Int) {
        self.start = start
        self.originalIndices = originalIndices
        self.originalCount = originalCount
    }

    /// A block of `count` tokens at rows `rows`, none dropped yet.
    public init(rows: Range<Int>) {
        self.init(start: rows.lowerBound, originalIndices: Array(0..<rows.count), originalCount: rows.count)
    }

    public var rows: Range<Int> { start..<(start + originalIndices.count) }
}

/// The decision of one drop: which rows of the current sequence survive, and the blocks after it.
public struct DropPlan: Equatable, Sendable {
    /// Rows of the current sequence that survive, increasing: all text rows and the kept image rows.
    public let keptRows: [Int]
    public let blocks: [ImageBlockState]
    /// Per block: the sorted original indices that survive.
    public var keptImageTokens: [[Int]] { blocks.map(\.originalIndices) }

    /// Drop number `drop` of `reducer` over a sequence of `sequenceLength` rows: each block keeps
    /// its own top `reducer.keptCount(N, drop)` by `scores(sequenceLength)` (ties to the lower
    /// index), in their original order; text rows always survive.
    public init(scores: [Float], blocks: [ImageBlockState], reducer: VisualTokenReducer, drop: Int) {
        precondition(blocks.allSatisfy { $0.rows.upperBound <= scores.count }, "a block lies outside the scores")
        var keptRows: [Int] = []
        var newBlocks: [ImageBlockState] = []
        var cursor = 0
        for block in blocks {
            keptRows.append(contentsOf: cursor..<block.start)
            let keep = min(block.originalIndices.count, reducer.keptCount(originalCount: block.originalCount, afterDrop: drop))
            let local = topIndicesSorted(Array(scores[block.rows]), count: keep)
            newBlocks.append(ImageBlockState(
                start: keptRows.count, originalIndices: local.map { block.originalIndices[$0] }, originalCount: block.originalCount))
            keptRows.append(contentsOf: local.map { block.start + $0 })
            cursor = block.rows.upperBound
        }
        keptRows.append(contentsOf: cursor..<scores.count)
        self.keptRows = keptRows
        self.blocks = newBlocks
    }

    /// Positions after the drop: 0..<kept (reindex) or the kept rows' own positions (preserve).
    public func positions(from current: [Int], mode: PositionMode) -> [Int] {
        mode == .reindex ? Array(0..<keptRows.count) : keptRows.map { current[$0] }
    }
}
