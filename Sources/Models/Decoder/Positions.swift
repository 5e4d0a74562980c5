/// Rotary positions of a sequence of tokens: one row of positions per rotary axis, 1 for LLaMA's
/// RoPE, 3 (temporal, height, width) for a multimodal RoPE such as Qwen2-VL's. (axes, tokens).
public struct Positions: Equatable, Sendable {
    public private(set) var axes: [[Int]]

    /// Positions with one row per axis, all of the same length.
    public init(axes: [[Int]]) {
        precondition(!axes.isEmpty && axes.allSatisfy { $0.count == axes[0].count }, "positions need ≥ 1 axis of equal lengths")
        self.axes = axes
    }

    /// 1-D positions.
    public init(_ positions: [Int]) { self.init(axes: [positions]) }

    /// 0..<count on every one of `axisCount` axes.
    public static func sequential(_ count: Int, axisCount: Int = 1) -> Positions {
        Positions(axes: Array(repeating: Array(0..<count), count: axisCount))
    }

    public var count: Int { axes[0].count }

    /// The 1-D positions of a decoder with plain RoPE.
    public var linear: [Int] {
        precondition(axes.count == 1, "a \(axes.count)-axis position used as 1-D")
        return axes[0]
    }

    /// The positions of `rows`, in that order.
    public func gathering(_ rows: [Int]) -> Positions {
        Positions(axes: axes.map { axis in rows.map { axis[$0] } })
    }

    /// The position after every one of these on every axis: where text that follows continues.
    public var next: Int { (axes.compactMap { $0.max() }.max() ?? -1) + 1 }

    /// One token at `position` on every axis (text after the prompt).
    public func token(at position: Int) -> Positions {
        Positions(axes: Array(repeating: [position], count: axes.count))
    }
}
