import CKernels
import Foundation

/// Scaled dot-product attention: a few query rows (decode) as SIMD loops (`fewQueryAttention`),
/// many in cache-sized tiles (`tiledAttention`: AVX-512, head dimension 64 or 128), else one head
/// at a time through BLAS (`blockedAttention`).
///
/// queries(queryCount, heads·headDim), keys and values (keyCount, keyValueHeads·headDim),
/// output(queryCount, heads·headDim). Query row i sees keys 0..<visibleKeys(i) (the causal
/// mask, or all keys). Query head h reads key/value head h / (heads / keyValueHeads), as
/// transformers' `repeat_kv` arranges grouped-query attention. Softmax in fp32 with scale
/// 1/sqrt(headDim).
public func multiHeadAttention(
    _ output: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
    queryCount: Int, keyCount: Int, heads: Int, keyValueHeads: Int, headDim: Int,
    visibleKeys: (Int) -> Int
) {
    if queryCount <= decodeQueryLimit {
        fewQueryAttention(
            output, queries: queries, keys: keys, values: values, queryCount: queryCount, keyCount: keyCount,
            heads: heads, keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visibleKeys)
        return
    }
    if tiledAttention(
        output, queries: queries, keys: keys, values: values, queryCount: queryCount, keyCount: keyCount, heads: heads,
        keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visibleKeys)
    {
        return
    }
    blockedAttention(
        output, queries: queries, keys: keys, values: values, queryCount: queryCount, keyCount: keyCount,
        heads: heads, keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visibleKeys)
}

/// The attention of `multiHeadAttention` in tiles of 64 query rows of one head (`pd_attention_tile`:
/// FlashAttention's online softmax, everything in cache, no BLAS), tiles in parallel on our threads.
/// Returns false, writing nothing, where the kernel does not apply (no AVX-512, a head dimension
/// other than 64 or 128).
public func tiledAttention(
    _ output: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
    queryCount: Int, keyCount: Int, heads: Int, keyValueHeads: Int, headDim: Int,
    visibleKeys: (Int) -> Int
) -> Bool {
    guard CPUFeatures.current.contains(.avx512f), headDim == 64 || headDim == 128 else { return false }
    let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim
    let groupSize = heads / keyValueHeads
    let scale = 1 / Float(headDim).squareRoot()
    let tileRows = Int(PD_ATTENTION_ROWS)
    let visible = (0..<queryCount).map { Int32(min(keyCount, visibleKeys($0))) }  // (queries) keys each row sees
    let tiles = (queryCount + tileRows - 1) / tileRows
    let scratchFloats = pd_attention_scratch_floats(headDim)
    visible.withUnsafeBufferPointer { visible in
        // Tiles of one head side by side: they share the head's keys and values in cache.
        ThreadPool.parallelFor(heads * tiles, minimumPerThread: 1, chunksPerThread: 4) { range in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchFloats)  // the kernel's kᵀ, S, O, m, l
            defer { scratch.deallocate() }
            for item in range {
                let head = item / tiles, first = (item % tiles) * tileRows
                let rows = min(tileRows, queryCount - first), keyValueHead = head / groupSize
                let status = pd_attention_tile(
                    queries + first * queryWidth + head * headDim, queryWidth, rows,
                    keys + keyValueHead * headDim, values + keyValueHead * headDim, keyValueWidth, headDim,
                    visible.baseAddress! + first, scale, output + first * queryWidth + head * headDim, queryWidth, scratch)
                precondition(status == 0, "pd_attention_tile refused a tile it was checked for (\(status))")
            }
        }
    }
    return true
}

/// The attention of `multiHeadAttention` through BLAS: for each block of query rows and each head,
/// scores by sgemm, the SIMD softmax, then sgemm with the values.
public func blockedAttention(
    _ output: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
    queryCount: Int, keyCount: Int, heads: Int, keyValueHeads: Int, headDim: Int,
    visibleKeys: (Int) -> Int
) {
    let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim
    let groupSize = heads / keyValueHeads
    let scale = 1 / Float(headDim).squareRoot()
    // Query rows go in blocks; a block multiplies only the keys its last row can see, so a causal
    // prefill skips (most of) the masked upper triangle instead of computing and zeroing it.
    let blockRows = 256
    let scores = Tensor(shape: [min(queryCount, blockRows), keyCount])  // (block rows, keys) of one head at a time
    for blockStart in stride(from: 0, to: queryCount, by: blockRows) {
        let rows = min(blockRows, queryCount - blockStart)
        let visible = (0..<rows).reduce(0) { max($0, min(keyCount, visibleKeys(blockStart + $1))) }
        for head in 0..<heads {
            let keyValueHead = head / groupSize
            BLAS.gemm(
                transposeA: false, transposeB: true, m: rows, n: visible, k: headDim, alpha: scale,
                a: queries + blockStart * queryWidth + head * headDim, lda: queryWidth,
                b: keys + keyValueHead * headDim, ldb: keyValueWidth, beta: 0, c: scores.pointer, ldc: visible)
            softmaxRowsForward(scores.pointer, rows: rows, columns: visible) { min(visible, visibleKeys(blockStart + $0)) }
            BLAS.gemm(
                transposeA: false, transposeB: false, m: rows, n: headDim, k: visible, alpha: 1,
                a: scores.pointer, lda: visible, b: values + keyValueHead * headDim, ldb: keyValueWidth,
                beta: 0, c: output + blockStart * queryWidth + head * headDim, ldc: queryWidth)
        }
    }
    withExtendedLifetime(scores) {}
}

/// Query rows up to which attention runs as plain SIMD loops (decode): thousands of one-row BLAS
/// calls per token would cost more in OpenBLAS's thread hand-offs than in arithmetic.
let decodeQueryLimit = 4

/// The same attention for a few query rows: each item is one query row and one key/value head with
/// the query heads that share it (GQA), so each key and value row is read once for all of them;
/// dot products, softmax and the weighted sum of values in SIMD registers, no BLAS.
func fewQueryAttention(
    _ output: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
    queryCount: Int, keyCount: Int, heads: Int, keyValueHeads: Int, headDim: Int,
    visibleKeys: (Int) -> Int
) {
    let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim
    let groupSize = heads / keyValueHeads
    let scale = 1 / Float(headDim).squareRoot()
    ThreadPool.parallelFor(keyValueHeads * queryCount, minimumPerThread: 1, chunksPerThread: 4) { range in
        let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: max(groupSize * keyCount, 1))  // (group heads, keys)
        defer { probabilities.deallocate() }
        for item in range {
            let keyValueHead = item % keyValueHeads, row = item / keyValueHeads
            let firstHead = keyValueHead * groupSize
            let query = queries + row * queryWidth + firstHead * headDim  // (group heads, headDim), contiguous
            let keyBase = keys + keyValueHead * headDim, valueBase = values + keyValueHead * headDim
            let visible = visibleKeys(row)
            // A head's slice of the cache is a short run in every row (headDim of keyValueWidth floats):
            // the rows are asked for eight ahead, or the loop waits on memory for each.
            for key in 0..<visible {
                let keyRow = keyBase + key * keyValueWidth
                prefetchRow(keyRow + prefetchDistance * keyValueWidth, count: headDim)
                for head in 0..<groupSize {
                    probabilities[head * visible + key] = dot(query + head * headDim, keyRow, count: headDim) * scale
                }
            }
            for head in 0..<groupSize { softmaxInPlace(probabilities + head * visible, count: visible) }
            let out = output + row * queryWidth + firstHead * headDim  // (group heads, headDim), contiguous
            out.initialize(repeating: 0, count: groupSize * headDim)
            for key in 0..<visible {
                let valueRow = valueBase + key * keyValueWidth
                prefetchRow(valueRow + prefetchDistance * keyValueWidth, count: headDim)
                for head in 0..<groupSize {
                    accumulate(out + head * headDim, valueRow, weight: probabilities[head * visible + key], count: headDim)
                }
            }
        }
    }
}

/// Cache rows `fewQueryAttention` asks for ahead of the one it reads.
let prefetchDistance = 8

/// Asks for the cache lines of row(count) (a hint: past the end of the cache it does nothing).
@inline(__always)
func prefetchRow(_ row: UnsafePointer<Float>, count: Int) {
    for offset in stride(from: 0, to: count, by: 16) { pd_prefetch(row + offset) }
}

/// Σ a(count) · b(count) in SIMD registers.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var sum0 = SIMD8<Float>(), sum1 = SIMD8<Float>()
    var index = 0
    while index + 16 <= count {
        sum0.addProduct(UnsafeRawPointer(a + index).loadUnaligned(as: SIMD8<Float>.self),
                        UnsafeRawPointer(b + index).loadUnaligned(as: SIMD8<Float>.self))
        sum1.addProduct(UnsafeRawPointer(a + index + 8).loadUnaligned(as: SIMD8<Float>.self),
                        UnsafeRawPointer(b + index + 8).loadUnaligned(as: SIMD8<Float>.self))
        index += 16
    }
    var total = (sum0 + sum1).sum()
    while index < count {
        total += a[index] * b[index]
        index += 1
    }
    return total
}

/// accumulator(count) += weight · values(count).
@inline(__always)
func accumulate(_ accumulator: UnsafeMutablePointer<Float>, _ values: UnsafePointer<Float>, weight: Float, count: Int) {
    var index = 0
    let factor = SIMD8<Float>(repeating: weight)
    while index + 8 <= count {
        var current = UnsafeRawPointer(accumulator + index).loadUnaligned(as: SIMD8<Float>.self)
        current.addProduct(factor, UnsafeRawPointer(values + index).loadUnaligned(as: SIMD8<Float>.self))
        UnsafeMutableRawPointer(accumulator + index).storeBytes(of: current, as: SIMD8<Float>.self)
        index += 8
    }
    while index < count {
        accumulator[index] += weight * values[index]
        index += 1
    }
}
