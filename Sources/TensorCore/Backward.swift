import Foundation

// Backward kernels, the partners of the forward kernels (llm.c style): gradient outputs first,
// then the upstream gradient, then what the forward kept, then sizes. Every gradient output is
// ACCUMULATED (+=): residual branches and shared weights add up, so callers zero them first.
// A nil gradient output is not computed (a frozen weight, or an input nothing needs).

/// Backward of `output(rows, outFeatures) = input(rows, inFeatures) · weight(outFeatures, inFeatures)ᵀ + bias`.
/// dinput(rows, inFeatures) += doutput · weight; dweight(outFeatures, inFeatures) += doutputᵀ · input;
/// dbias(outFeatures) += Σ_rows doutput.
public func linearBackward(
    dinput: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
    doutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    rows: Int, inFeatures: Int, outFeatures: Int
) {
    if rows == 0 { return }
    if let dinput {
        BLAS.gemm(
            transposeA: false, transposeB: false, m: rows, n: inFeatures, k: outFeatures, alpha: 1,
            a: doutput, lda: outFeatures, b: weight, ldb: inFeatures, beta: 1, c: dinput, ldc: inFeatures)
    }
    if let dweight {
        BLAS.gemm(
            transposeA: true, transposeB: false, m: outFeatures, n: inFeatures, k: rows, alpha: 1,
            a: doutput, lda: outFeatures, b: input, ldb: inFeatures, beta: 1, c: dweight, ldc: inFeatures)
    }
    if let dbias { sumRows(dbias, doutput, rows: rows, columns: outFeatures) }
}

/// sums(columns) += Σ_rows values(rows, columns), in rows order (deterministic).
public func sumRows(_ sums: UnsafeMutablePointer<Float>, _ values: UnsafePointer<Float>, rows: Int, columns: Int) {
    ThreadPool.parallelFor(columns, minimumPerThread: 64) { range in
        for column in range {
            var total: Float = 0
            for row in 0..<rows { total += values[row * columns + column] }
            sums[column] += total
        }
    }
}

/// Backward of `rmsNormForward`: y = weight · x · r with r = 1/sqrt(mean(x²) + ε).
/// dinput(rows, dim) += r·(weight∘dy) − x · r³/dim · Σ(weight∘dy∘x); dweight(dim) += Σ_rows dy∘x·r.
public func rmsNormBackward(
    dinput: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
    doutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    rows: Int, dim: Int, epsilon: Float
) {
    let inverseRoots = UnsafeMutablePointer<Float>.allocate(capacity: max(rows, 1))  // (rows,)
    defer { inverseRoots.deallocate() }
    ThreadPool.parallelFor(rows, minimumPerThread: 16) { range in
        for row in range {
            let x = input + row * dim, dy = doutput + row * dim, dx = dinput + row * dim
            var sumOfSquares: Float = 0
            for i in 0..<dim { sumOfSquares += x[i] * x[i] }
            let r = 1 / (sumOfSquares / Float(dim) + epsilon).squareRoot()
            inverseRoots[row] = r
            var projection: Float = 0
            for i in 0..<dim { projection += weight[i] * dy[i] * x[i] }
            let correction = projection * r * r * r / Float(dim)
            for i in 0..<dim { dx[i] += r * weight[i] * dy[i] - correction * x[i] }
        }
    }
    guard let dweight else { return }
    ThreadPool.parallelFor(dim, minimumPerThread: 64) { range in
        for i in range {
            var total: Float = 0
            for row in 0..<rows { total += doutput[row * dim + i] * input[row * dim + i] * inverseRoots[row] }
            dweight[i] += total
        }
    }
}

/// Backward of `layerNormForward`: with n = (x − mean)·r, dn = dy∘weight,
/// dinput(rows, dim) += r·(dn − mean(dn) − n·mean(dn∘n)); dweight(dim) += Σ dy∘n; dbias(dim) += Σ dy.
public func layerNormBackward(
    dinput: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
    doutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    rows: Int, dim: Int, epsilon: Float
) {
    let normalized = UnsafeMutablePointer<Float>.allocate(capacity: max(rows * dim, 1))  // (rows, dim)
    defer { normalized.deallocate() }
    ThreadPool.parallelFor(rows, minimumPerThread: 16) { range in
        for row in range {
            let x = input + row * dim, n = normalized + row * dim, dy = doutput + row * dim
            let (mean, r) = layerNormStatistics(x, dim: dim, epsilon: epsilon)
            for i in 0..<dim { n[i] = (x[i] - mean) * r }
            guard let dinput else { continue }
            var meanGradient: Float = 0, meanGradientTimesNormalized: Float = 0
            for i in 0..<dim {
                let dn = dy[i] * weight[i]
                meanGradient += dn
                meanGradientTimesNormalized += dn * n[i]
            }
            meanGradient /= Float(dim)
            meanGradientTimesNormalized /= Float(dim)
            let dx = dinput + row * dim
            for i in 0..<dim { dx[i] += r * (dy[i] * weight[i] - meanGradient - n[i] * meanGradientTimesNormalized) }
        }
    }
    if dweight == nil && dbias == nil { return }
    ThreadPool.parallelFor(dim, minimumPerThread: 64) { range in
        for i in range {
            var weightTotal: Float = 0, biasTotal: Float = 0
            for row in 0..<rows {
                weightTotal += doutput[row * dim + i] * normalized[row * dim + i]
                biasTotal += doutput[row * dim + i]
            }
            dweight?[i] += weightTotal
            dbias?[i] += biasTotal
        }
    }
}

/// output(count) = silu(gate) · up: LLaMA's SwiGLU between gate_proj/up_proj and down_proj (the
/// backward needs gate, so it is not overwritten).
public func swigluForward(_ output: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let g = gate[i]
            output[i] = g / (1 + expf(-g)) * up[i]
        }
    }
}

/// Backward of y = silu(gate)·up: dgate(count) += dy·up·σ(g)(1 + g(1 − σ(g))); dup(count) += dy·silu(g).
public func swigluBackward(
    dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
    doutput: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int
) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let g = gate[i]
            let sigmoid = 1 / (1 + expf(-g))
            dgate[i] += doutput[i] * up[i] * sigmoid * (1 + g * (1 - sigmoid))
            dup[i] += doutput[i] * g * sigmoid
        }
    }
}

/// Backward of the exact-erf GELU: dinput(count) += dy · (Φ(x) + x·φ(x)).
public func geluBackward(_ dinput: UnsafeMutablePointer<Float>, doutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let x = input[i]
            let cumulative = 0.5 * (1 + erff(x * 0.70710678118654752))
            let density = expf(-0.5 * x * x) * 0.39894228040143268
            dinput[i] += doutput[i] * (cumulative + x * density)
        }
    }
}

/// Backward of quick_gelu y = x·σ(1.702x): dinput(count) += dy · (σ + 1.702·x·σ(1 − σ)).
public func quickGeluBackward(_ dinput: UnsafeMutablePointer<Float>, doutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
    ThreadPool.parallelFor(count, minimumPerThread: 1 << 14) { range in
        for i in range {
            let x = input[i]
            let sigmoid = 1 / (1 + expf(-1.702 * x))
            dinput[i] += doutput[i] * (sigmoid + 1.702 * x * sigmoid * (1 - sigmoid))
        }
    }
}

/// Backward of `multiHeadAttention` (same layout, GQA and visibility rule). The probabilities are
/// recomputed block by block instead of kept, so memory stays (block rows × keys) per head:
/// with P = softmax(q·kᵀ·s) and O the forward's output(queryCount, heads·headDim),
/// dV += Pᵀ·dO, dS = P∘(dO·Vᵀ − rowsum(dO∘O)), dQ += dS·K·s, dK += dSᵀ·Q·s.
/// dqueries(queryCount, heads·headDim), dkeys and dvalues (keyCount, keyValueHeads·headDim) accumulate;
/// a query head's key/value gradients add into its group's key/value head.
public func multiHeadAttentionBackward(
    dqueries: UnsafeMutablePointer<Float>, dkeys: UnsafeMutablePointer<Float>, dvalues: UnsafeMutablePointer<Float>,
    doutput: UnsafePointer<Float>, queries: UnsafePointer<Float>, keys: UnsafePointer<Float>,
    values: UnsafePointer<Float>, output: UnsafePointer<Float>,
    queryCount: Int, keyCount: Int, heads: Int, keyValueHeads: Int, headDim: Int,
    visibleKeys: (Int) -> Int
) {
    let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim
    let groupSize = heads / keyValueHeads
    let scale = 1 / Float(headDim).squareRoot()
    let blockRows = 256
    let capacity = min(queryCount, blockRows) * keyCount
    let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: max(capacity, 1))  // (block rows, visible) of one head
    let scoreGradients = UnsafeMutablePointer<Float>.allocate(capacity: max(capacity, 1))  // (block rows, visible)
    let rowDots = UnsafeMutablePointer<Float>.allocate(capacity: max(blockRows, 1))  // (block rows,) dO·O per row
    defer { probabilities.deallocate(); scoreGradients.deallocate(); rowDots.deallocate() }
    for blockStart in stride(from: 0, to: queryCount, by: blockRows) {
        let rows = min(blockRows, queryCount - blockStart)
        let visible = (0..<rows).reduce(0) { max($0, min(keyCount, visibleKeys(blockStart + $1))) }
        if visible == 0 { continue }
        for head in 0..<heads {
            let keyValueHead = head / groupSize
            let q = queries + blockStart * queryWidth + head * headDim
            let dq = dqueries + blockStart * queryWidth + head * headDim
            let o = output + blockStart * queryWidth + head * headDim
            let dO = doutput + blockStart * queryWidth + head * headDim
            let k = keys + keyValueHead * headDim, v = values + keyValueHead * headDim
            let dk = dkeys + keyValueHead * headDim, dv = dvalues + keyValueHead * headDim
            BLAS.gemm(
                transposeA: false, transposeB: true, m: rows, n: visible, k: headDim, alpha: scale,
                a: q, lda: queryWidth, b: k, ldb: keyValueWidth, beta: 0, c: probabilities, ldc: visible)
            softmaxRowsForward(probabilities, rows: rows, columns: visible) { min(visible, visibleKeys(blockStart + $0)) }
            // dV(visible, headDim) += Pᵀ · dO
            BLAS.gemm(
                transposeA: true, transposeB: false, m: visible, n: headDim, k: rows, alpha: 1,
                a: probabilities, lda: visible, b: dO, ldb: queryWidth, beta: 1, c: dv, ldc: keyValueWidth)
            // dP(rows, visible) = dO · Vᵀ
            BLAS.gemm(
                transposeA: false, transposeB: true, m: rows, n: visible, k: headDim, alpha: 1,
                a: dO, lda: queryWidth, b: v, ldb: keyValueWidth, beta: 0, c: scoreGradients, ldc: visible)
            for row in 0..<rows {
                var total: Float = 0
                for i in 0..<headDim { total += dO[row * queryWidth + i] * o[row * queryWidth + i] }
                rowDots[row] = total
            }
            ThreadPool.parallelFor(rows, minimumPerThread: 8) { range in
                for row in range {
                    let p = probabilities + row * visible, ds = scoreGradients + row * visible
                    let dot = rowDots[row]
                    for key in 0..<visible { ds[key] = p[key] * (ds[key] - dot) }
                }
            }
            // dQ(rows, headDim) += dS · K · s;  dK(visible, headDim) += dSᵀ · Q · s
            BLAS.gemm(
                transposeA: false, transposeB: false, m: rows, n: headDim, k: visible, alpha: scale,
                a: scoreGradients, lda: visible, b: k, ldb: keyValueWidth, beta: 1, c: dq, ldc: queryWidth)
            BLAS.gemm(
                transposeA: true, transposeB: false, m: visible, n: headDim, k: rows, alpha: scale,
                a: scoreGradients, lda: visible, b: q, ldb: queryWidth, beta: 1, c: dk, ldc: keyValueWidth)
        }
    }
}

/// Mean cross-entropy pieces over rows of logits(rows, vocab) with `targets(rows)`: returns the
/// SUM of −log softmax(logits)[target] over the rows (in Double), and writes
/// dlogits(rows, vocab) = (softmax − onehot(target)) · gradientScale. Every target must be in range.
public func crossEntropyForwardBackward(
    dlogits: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>, targets: [Int],
    vocab: Int, gradientScale: Float
) -> Double {
    let rows = targets.count
    let losses = UnsafeMutablePointer<Double>.allocate(capacity: max(rows, 1))  // (rows,)
    defer { losses.deallocate() }
    ThreadPool.parallelFor(rows, minimumPerThread: 4) { range in
        for row in range {
            let x = logits + row * vocab, d = dlogits + row * vocab
            var maximum = -Float.infinity
            for i in 0..<vocab { maximum = max(maximum, x[i]) }
            var sum: Float = 0
            for i in 0..<vocab {
                let e = expf(x[i] - maximum)
                d[i] = e
                sum += e
            }
            let target = targets[row]
            losses[row] = Double(logf(sum) + maximum - x[target])
            let factor = gradientScale / sum
            for i in 0..<vocab { d[i] *= factor }
            d[target] -= gradientScale
        }
    }
    var total = 0.0
    for row in 0..<rows { total += losses[row] }
    return total
}
