import CKernels

/// Products in bf16 with fp32 sums, as llama.cpp and oneDNN compute on CPUs with AVX512-BF16:
/// the fp32 input is rounded to bf16 (nearest even), multiplied by bf16 weights, and each product
/// summed in fp32 (VDPBF16PS). About twice the fp32 FMA rate; not exact against fp32 (the input's
/// rounding), so it is a compute mode the caller chooses, never the parity tests' path.
public enum BFloat16Products {
    /// Whether this CPU has the instructions (`CPUFeatures.bfloat16Dot`).
    public static var isAvailable: Bool { CPUFeatures.current.isSuperset(of: .bfloat16Dot) }

    /// Output columns a thread takes at a time: the kernel's panel of 48.
    static let columnsPerChunk = 48

    /// output(m, n) = bf16(input(m, k)) · weights(n, k)ᵀ with fp32 sums; `weights` holds bf16,
    /// row-major (a PyTorch weight). Returns false, writing nothing, where the CPU lacks AVX512-BF16.
    @discardableResult
    public static func multiply(
        _ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, bfloat16Weights weights: UnsafeRawPointer,
        m: Int, n: Int, k: Int
    ) -> Bool {
        guard isAvailable else { return false }
        if m == 0 || n == 0 { return true }
        let (roundedInput, stride) = roundedRows(input, m: m, k: k)
        defer { roundedInput.deallocate() }
        multiply(output, bfloat16Input: roundedInput, stride: stride, bfloat16Weights: weights, m: m, n: n, k: k)
        return true
    }

    /// output(m, n) = input(m, k) · weights(n, k)ᵀ, both bf16, fp32 sums; input rows have an even
    /// `stride` ≥ k and hold zeros past k. Needs `isAvailable`.
    public static func multiply(
        _ output: UnsafeMutablePointer<Float>, bfloat16Input input: UnsafePointer<UInt16>, stride: Int,
        bfloat16Weights weights: UnsafeRawPointer, m: Int, n: Int, k: Int
    ) {
        precondition(isAvailable, "bf16 products need AVX512-BF16")
        precondition(stride % 2 == 0 && stride >= k, "the input's row stride must be even and at least k")
        let chunks = (n + columnsPerChunk - 1) / columnsPerChunk
        let w = weights.assumingMemoryBound(to: UInt16.self)
        ThreadPool.parallelFor(chunks, chunksPerThread: 4) { range in
            let first = range.lowerBound * columnsPerChunk, last = min(n, range.upperBound * columnsPerChunk)
            let status = pd_gemm_bf16(m, first, last, k, input, stride, w, output, n)
            precondition(status == 0, "pd_gemm_bf16 failed (\(status))")
        }
    }

    /// output(m, n) = bf16(input(m, k)) · bf16(d · q)ᵀ with fp32 sums, for Q8_0 weights of n rows
    /// (values q (n, k) int8, scales d (n, k / 32) fp16): each thread widens its 48 rows at a time
    /// to bf16 (one rounding of each weight, on top of the input's) and multiplies them in cache.
    /// Returns false, writing nothing, where the CPU lacks AVX512-BF16.
    @discardableResult
    public static func multiply(
        _ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, q8_0Values values: UnsafePointer<Int8>,
        scales: UnsafePointer<UInt16>, m: Int, n: Int, k: Int
    ) -> Bool {
        guard isAvailable else { return false }
        if m == 0 || n == 0 { return true }
        let (roundedInput, stride) = roundedRows(input, m: m, k: k)
        defer { roundedInput.deallocate() }
        let chunks = (n + columnsPerChunk - 1) / columnsPerChunk
        ThreadPool.parallelFor(chunks, chunksPerThread: 4) { range in
            let widened = UnsafeMutablePointer<Float>.allocate(capacity: columnsPerChunk * k)  // (48, k) fp32 of d · q
            let rounded = UnsafeMutablePointer<UInt16>.allocate(capacity: columnsPerChunk * k)  // (48, k) bf16
            defer { widened.deallocate(); rounded.deallocate() }
            for chunk in range {
                let first = chunk * columnsPerChunk, rows = min(columnsPerChunk, n - first)
                pd_dequantize_q8_0(values, scales, first * k, rows * k, widened)
                pd_convert_to_bf16(widened, rounded, rows * k)
                let status = pd_gemm_bf16(m, 0, rows, k, roundedInput, stride, rounded, output + first, n)
                precondition(status == 0, "pd_gemm_bf16 failed (\(status))")
            }
        }
        return true
    }

    /// input(m, k) rounded to bf16 in a new buffer (m, stride) the caller deallocates: the stride is
    /// k rounded up to even (the kernel reads pairs), zero past k.
    static func roundedRows(_ input: UnsafePointer<Float>, m: Int, k: Int) -> (UnsafeMutablePointer<UInt16>, stride: Int) {
        let stride = (k + 1) / 2 * 2
        let rounded = UnsafeMutablePointer<UInt16>.allocate(capacity: m * stride)  // (m, stride) bf16, zero past k
        ThreadPool.parallelFor(m, minimumPerThread: 16) { range in
            for row in range {
                pd_convert_to_bf16(input + row * k, rounded + row * stride, k)
                if stride > k { rounded[row * stride + k] = 0 }
            }
        }
        return (rounded, stride)
    }

    /// destination(count) = bf16 of source(count), nearest even, NaN kept (PyTorch's rounding).
    public static func round(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<UInt16>, count: Int) {
        pd_convert_to_bf16(source, destination, count)
    }
}
