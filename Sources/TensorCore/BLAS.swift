import CBLAS

/// Matrix products through OpenBLAS. Every product in the project goes through here.
///
/// OpenBLAS runs its own worker threads; our `ThreadPool` never calls BLAS from inside a
/// parallel region, so the two never oversubscribe the cores.
public enum BLAS {
    /// c(m,n) = alpha * a(m,k) · b(n,k)ᵀ + beta * c. The shape of a linear layer: `b` is a
    /// PyTorch weight (out_features, in_features).
    public static func matmulTransposedB(
        _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0
    ) {
        gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: alpha,
             a: a, lda: k, b: b, ldb: k, beta: beta, c: c, ldc: n)
    }

    /// c(m,n) = alpha * a(m,k) · b(k,n) + beta * c.
    public static func matmul(
        _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0
    ) {
        gemm(transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: alpha,
             a: a, lda: k, b: b, ldb: n, beta: beta, c: c, ldc: n)
    }

    /// General row-major product with leading dimensions, so strided views (one attention head
    /// inside a (tokens, heads·head_dim) buffer) need no copy. op(a) is (m,k), op(b) is (k,n).
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// OpenBLAS's worker count (process-wide).
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }
}
