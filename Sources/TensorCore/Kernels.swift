import Foundation

// Forward kernels over flat fp32 buffers. Outputs first, then inputs, then sizes; every
// buffer carries its shape in a comment. Loops over rows run on the thread pool.

/// out(rows, dim) = rmsNorm(input(rows, dim)) * weight(dim), as LlamaRMSNorm: fp32 variance of
/// the row, `x * 1/sqrt(variance + epsilon)`, then the weight.
public func rmsNormForward(
    _ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    rows: Int, dim: Int, epsilon: Float
) {
    ThreadPool.parallelFor(rows, minimumPerThread: 16) { range in
        for row in range {
            let x = input + row * dim
            let y = output + row * dim
            var sumOfSquares: Float = 0
            for i in 0..<dim { sumOfSquares += x[i] * x[i] }
            let inverseRoot = 1 / (sumOfSquares / Float(dim) + epsilon).squareRoot()
            for i in 0..<dim { y[i] = weight[i] * (x[i] * inverseRoot) }
        }
    }
}

/// out(rows, dim) = LayerNorm(input(rows, dim)) * weight(dim) + bias(dim), biased variance as PyTorch.
public func layerNormForward(
    _ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>,
    rows: Int, dim: Int, epsilon: Float
) {
    ThreadPool.parallelFor(rows, minimumPerThread: 16) { range in
        for row in range {
            let x = input + row * dim
            let y = output + row * dim
            let (mean, inverseRoot) = layerNormStatistics(x, dim: dim, epsilon: epsilon)
            for i in 0..<dim { y[i] = (x[i] - mean) * inverseRoot * weight[i] + bias[i] }
        }
    }
}

/// The mean of row x(dim) and 1/sqrt(biased variance + ε), as PyTorch's LayerNorm computes them.
@inline(__always)
func layerNormStatistics(_ x: UnsafePointer<Float>, dim: Int, epsilon: Float) -> (mean: Float, inverseRoot: Float) {
    var mean: Float = 0
    for i in 0..<dim { mean += x[i] }
    mean /= Float(dim)
    var variance: Float = 0
    for i in 0..<dim { variance += (x[i] - mean) * (x[i] - mean) }
    variance /= Float(dim)
    return (mean, 1 / (variance + epsilon).squareRoot())
}

/// accumulator(count) += addend(count).
public func addInPlace(_ accumulator: UnsafeMutablePointer<Float>, _ addend: UnsafePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 16) { range in
        for i in range { accumulator[i] += addend[i] }
    }
}

/// out(rows, columns) += bias(columns), broadcast over rows.
public func addBias(_ output: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, columns: Int) {
    for row in 0..<rows {
        let y = output + row * columns
        for column in 0..<columns { y[column] += bias[column] }
    }
}

/// In-place numerically stable softmax of each row of values(rows, columns) over its first
/// `validColumns(row)` entries; the remaining entries (masked keys) become 0.
public func softmaxRowsForward(
    _ values: UnsafeMutablePointer<Float>, rows: Int, columns: Int, validColumns: (Int) -> Int
) {
    ThreadPool.parallelFor(rows, minimumPerThread: 8) { range in
        for row in range {
            let x = values + row * columns
            let valid = validColumns(row)
            softmaxInPlace(x, count: valid)
            for i in valid..<columns { x[i] = 0 }
        }
    }
}

/// x(count) = softmax(x), numerically stable, e^x eight lanes at a time (`exp8`).
@inline(__always)
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    var maximum = -Float.infinity
    for i in 0..<count { maximum = max(maximum, x[i]) }
    var sums = SIMD8<Float>()
    var index = 0
    let shift = SIMD8<Float>(repeating: maximum)
    while index + 8 <= count {
        let e = exp8(UnsafeRawPointer(x + index).loadUnaligned(as: SIMD8<Float>.self) - shift)
        UnsafeMutableRawPointer(x + index).storeBytes(of: e, as: SIMD8<Float>.self)
        sums += e
        index += 8
    }
    var sum = sums.sum()
    while index < count {
        let e = expf(x[index] - maximum)
        x[index] = e
        sum += e
        index += 1
    }
    let inverseSum = 1 / sum
    for i in 0..<count { x[i] *= inverseSum }
}

/// Index of the largest of values(count); the first one on ties, like torch.argmax.
public func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for i in 1..<max(count, 1) where values[i] > values[best] { best = i }
    return best
}

/// values(count) = quick_gelu(values) = x · sigmoid(1.702 x), CLIP's activation, in place.
public func quickGeluForward(_ values: UnsafeMutablePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let x = values[i]
            values[i] = x / (1 + expf(-1.702 * x))
        }
    }
}

/// values(count) = gelu(values) = x · Φ(x) with the exact erf, as torch's default GELU, in place.
public func geluForward(_ values: UnsafeMutablePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let x = values[i]
            values[i] = 0.5 * x * (1 + erff(x * 0.70710678118654752))
        }
    }
}

/// e^x for eight lanes in SIMD registers, within about 1 ulp of `expf` (Cephes' expf: x = n·ln 2 + r
/// with a two-part ln 2, a degree-7 polynomial for e^r, 2^n built in the exponent bits; rounding
/// through the 1.5·2²³ trick, so no float→integer conversion, which Swift would scalarize).
/// Inputs are clamped to [-87, 88] (e^-87 ≈ 1.6e-38 stands in for smaller results).
@inline(__always)
public func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let clamped = x.clamped(lowerBound: SIMD8(repeating: -87), upperBound: SIMD8(repeating: 88))
    let magic = SIMD8<Float>(repeating: 12_582_912)  // 1.5 · 2²³
    let shifted = clamped * 1.44269504088896341 + magic
    let n = shifted - magic  // round(x · log2 e)
    var r = clamped - n * 0.693359375
    r = r - n * -2.12194440e-4
    var p = SIMD8<Float>(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * r * r + r + 1
    let bits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self)
    let scale = (bits &- 0x4B40_0000 &+ 127) &<< 23  // the float 2^n
    return p * unsafeBitCast(scale, to: SIMD8<Float>.self)
}
