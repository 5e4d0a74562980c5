/// Which attention ranks the image tokens at a drop.
public enum ScoringRule: Equatable, Sendable {
    /// PyramidDrop: the next layer's input norm and q/k projections applied to the hidden states
    /// leaving the drop layer, with the current positions.
    case nextLayerQueryKey
    /// FastV: the real attention of the last layer before the drop.
    case lastLayerAttention
    /// A control: uniformly random scores from this seed (a random subset of the same size).
    case random(seed: UInt64)
}

/// The strategy of visual token reduction: where drops happen and how many tokens survive.
/// It decides; the decoder applies (gathers rows and positions, keeps per-layer caches).
public protocol VisualTokenReducer: Sendable {
    /// Decoder layers (1-based counts) after which a drop happens, increasing.
    var dropLayers: [Int] { get }
    /// Tokens of an image block of `originalCount` tokens that survive drop number `drop`.
    func keptCount(originalCount: Int, afterDrop drop: Int) -> Int
    var scoring: ScoringRule { get }
    var positionMode: PositionMode { get }
}

/// No reduction: every image token reaches every layer.
public struct NoReduction: VisualTokenReducer {
    public init() {}
    public var dropLayers: [Int] { [] }
    public func keptCount(originalCount: Int, afterDrop drop: Int) -> Int { originalCount }
    public var scoring: ScoringRule { .nextLayerQueryKey }
    /// Nothing is dropped, so every token keeps its own position (for 1-D positions the same as
    /// reindexing; for M-RoPE's the only right choice).
    public var positionMode: PositionMode { .preserve }
}

/// PyramidDrop: a drop at the end of every stage, ranked by the next layer's queries.
public struct PyramidDropReducer: VisualTokenReducer {
    public let schedule: PyramidDropSchedule
    public let positionMode: PositionMode

    public init(schedule: PyramidDropSchedule, positionMode: PositionMode = .reindex) {
        self.schedule = schedule
        self.positionMode = positionMode
    }

    public var dropLayers: [Int] { schedule.layers }
    public func keptCount(originalCount: Int, afterDrop drop: Int) -> Int {
        schedule.keptCount(originalCount: originalCount, afterDrop: drop)
    }
    public var scoring: ScoringRule { .nextLayerQueryKey }
}

/// FastV: one drop after layer K, ranked by that layer's own attention.
public struct FastVReducer: VisualTokenReducer {
    public let setting: FastVSetting
    public let positionMode: PositionMode

    public init(setting: FastVSetting, positionMode: PositionMode = .preserve) {
        self.setting = setting
        self.positionMode = positionMode
    }

    public var dropLayers: [Int] { [setting.layer] }
    public func keptCount(originalCount: Int, afterDrop drop: Int) -> Int {
        setting.keptCount(originalCount: originalCount)
    }
    public var scoring: ScoringRule { .lastLayerAttention }
}

/// Random dropping, the control of the paper's comparison: PyramidDrop's layers and counts, but
/// the kept image tokens are a uniformly random subset (seeded, so runs repeat).
public struct RandomDropReducer: VisualTokenReducer {
    public let schedule: PyramidDropSchedule
    public let seed: UInt64
    public let positionMode: PositionMode

    public init(schedule: PyramidDropSchedule, seed: UInt64, positionMode: PositionMode = .reindex) {
        self.schedule = schedule
        self.seed = seed
        self.positionMode = positionMode
    }

    public var dropLayers: [Int] { schedule.layers }
    public func keptCount(originalCount: Int, afterDrop drop: Int) -> Int {
        schedule.keptCount(originalCount: originalCount, afterDrop: drop)
    }
    public var scoring: ScoringRule { .random(seed: seed) }
}

/// The `count` highest of scores(N), ties to the lower index, returned in increasing index
/// order so that kept image tokens stay in their original order.
public func topIndicesSorted(_ scores: [Float], count: Int) -> [Int] {
    if count >= scores.count { return Array(scores.indices) }
    if count <= 0 { return [] }
    let ranked = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
    return ranked.prefix(count).sorted()
}
