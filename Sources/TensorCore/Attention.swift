/// Scaled dot-product attention, one head at a time, every product through BLAS.
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
    let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim
    let groupSize = heads / keyValueHeads
    let scale = 1 / Float(headDim).squareRoot()
    let scores = Tensor(shape: [queryCount, keyCount])  // (queries, keys) of one head at a time
    for head in 0..<heads {
        let keyValueHead = head / groupSize
        BLAS.gemm(
            transposeA: false, transposeB: true, m: queryCount, n: keyCount, k: headDim, alpha: scale,
            a: queries + head * headDim, lda: queryWidth, b: keys + keyValueHead * headDim, ldb: keyValueWidth,
            beta: 0, c: scores.pointer, ldc: keyCount)
        softmaxRowsForward(scores.pointer, rows: queryCount, columns: keyCount, validColumns: visibleKeys)
        BLAS.gemm(
            transposeA: false, transposeB: false, m: queryCount, n: headDim, k: keyCount, alpha: 1,
            a: scores.pointer, lda: keyCount, b: values + keyValueHead * headDim, ldb: keyValueWidth,
            beta: 0, c: output + head * headDim, ldc: queryWidth)
    }
    withExtendedLifetime(scores) {}
}
