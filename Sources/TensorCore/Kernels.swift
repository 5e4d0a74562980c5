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
            var mean: Float = 0
            for i in 0..<dim { mean += x[i] }
            mean /= Float(dim)
            var variance: Float = 0
            for i in 0..<dim { variance += (x[i] - mean) * (x[i] - mean) }
            variance /= Float(dim)
            let inverseRoot = 1 / (variance + epsilon).squareRoot()
            for i in 0..<dim { y[i] = (x[i] - mean) * inverseRoot * weight[i] + bias[i] }
        }
    }
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

/// gate(count) = silu(gate) * up, in place: LLaMA's SwiGLU between gate_proj/up_proj and down_proj.
public func swigluForward(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
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
            var maximum = -Float.infinity
            for i in 0..<valid { maximum = max(maximum, x[i]) }
            var sum: Float = 0
            for i in 0..<valid {
                let e = expf(x[i] - maximum)
                x[i] = e
                sum += e
            }
            let inverseSum = 1 / sum
            for i in 0..<valid { x[i] *= inverseSum }
            for i in valid..<columns { x[i] = 0 }
        }
    }
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
