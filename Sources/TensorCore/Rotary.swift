import Foundation

/// Rotary position embedding as transformers applies it to LLaMA: `rotate_half` layout (the
/// first and second halves of each head form the pairs), inverse frequencies
/// `1 / theta^(2i/dim)` in fp32, angles `position * inverse frequency` in fp32. With `sections`
/// (Qwen2-VL's `mrope_section`, summing to headDim / 2) it is the multimodal RoPE: the first
/// sections[0] frequencies turn with the temporal position, the next sections[1] with the height
/// position and the last sections[2] with the width position.
public struct RotaryEmbedding: Sendable {
    public let headDim: Int
    public let theta: Double
    /// (headDim / 2,) inverse frequencies, computed as transformers does in fp32.
    public let inverseFrequencies: [Float]
    /// (headDim / 2,) which position axis each frequency turns with: all 0 for 1-D RoPE.
    public let axisOfFrequency: [Int]

    public init(headDim: Int, theta: Double, sections: [Int]? = nil) {
        precondition(headDim % 2 == 0, "rotary head_dim must be even, got \(headDim)")
        self.headDim = headDim
        self.theta = theta
        let half = headDim / 2
        if let sections {
            precondition(sections.reduce(0, +) == half && sections.allSatisfy { $0 >= 0 }, "rotary sections \(sections) must add up to head_dim / 2 = \(half)")
            axisOfFrequency = sections.enumerated().flatMap { axis, width in Array(repeating: axis, count: width) }
        } else {
            axisOfFrequency = Array(repeating: 0, count: half)
        }
        inverseFrequencies = (0..<half).map { Self.inverseFrequency($0, dim: headDim, theta: theta) }
    }

    /// Qwen2-VL's vision rotary embedding (axial 2-D): headDim / 4 frequencies `1 / theta^(4i/headDim)`
    /// turn with the patch's row and the same frequencies again with its column; positions are
    /// given as two axes (rows, columns).
    public init(axialHeadDim headDim: Int, theta: Double) {
        precondition(headDim % 4 == 0, "axial rotary head_dim must be a multiple of 4, got \(headDim)")
        self.headDim = headDim
        self.theta = theta
        let quarter = headDim / 4
        let frequencies = (0..<quarter).map { Self.inverseFrequency($0, dim: headDim / 2, theta: theta) }
        inverseFrequencies = frequencies + frequencies
        axisOfFrequency = Array(repeating: 0, count: quarter) + Array(repeating: 1, count: quarter)
    }

    /// torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim))[i], each step rounded to fp32.
    static func inverseFrequency(_ i: Int, dim: Int, theta: Double) -> Float {
        let exponent = Float(2 * i) / Float(dim)
        let power = Float(pow(Double(Float(theta)), Double(exponent)))
        return 1 / power
    }

    /// Rotates every head of values(tokens, heads, headDim) in place; `positions(tokens)` are the
    /// rotary positions of the rows. `inverse` rotates by the opposite angles: the rotation is
    /// orthogonal, so that is its backward (gradients of the rotated values to the unrotated ones).
    public func apply(_ values: UnsafeMutablePointer<Float>, tokens: Int, heads: Int, positions: [Int], inverse: Bool = false) {
        apply(values, tokens: tokens, heads: heads, positionAxes: [positions], inverse: inverse)
    }

    /// The same with one row of positions per axis (axes, tokens); frequency i takes its position
    /// from axis `axisOfFrequency[i]`.
    public func apply(_ values: UnsafeMutablePointer<Float>, tokens: Int, heads: Int, positionAxes: [[Int]], inverse: Bool = false) {
        precondition(positionAxes.allSatisfy { $0.count == tokens } && positionAxes.count > (axisOfFrequency.max() ?? 0))
        let half = headDim / 2
        ThreadPool.parallelFor(tokens, minimumPerThread: 16) { range in
            var cosines = [Float](repeating: 0, count: half)  // (half,)
            var sines = [Float](repeating: 0, count: half)  // (half,)
            for token in range {
                let onlyPosition = Float(positionAxes[0][token])  // every frequency's, with one axis
                for i in 0..<half {
                    let position = positionAxes.count == 1 ? onlyPosition : Float(positionAxes[axisOfFrequency[i]][token])
                    let angle = position * inverseFrequencies[i]
                    cosines[i] = cosf(angle)
                    sines[i] = inverse ? -sinf(angle) : sinf(angle)
                }
                for head in 0..<heads {
                    let x = values + (token * heads + head) * headDim
                    for i in 0..<half {
                        let first = x[i]
                        let second = x[i + half]
                        x[i] = first * cosines[i] - second * sines[i]
                        x[i + half] = second * cosines[i] + first * sines[i]
                    }
                }
            }
        }
    }
}
