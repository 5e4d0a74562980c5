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
        let stride = (k + 1) / 2 * 2  // even, as the kernel reads pairs
        let roundedInput = UnsafeMutablePointer<UInt16>.allocate(capacity: m * stride)  // (m, stride) bf16, zero past k
        defer { roundedInput.deallocate() }
        ThreadPool.parallelFor(m, minimumPerThread: 16) { range in
            for row in range {
                pd_convert_to_bf16(input + row * k, roundedInput + row * stride, k)
                if stride > k { roundedInput[row * stride + k] = 0 }
            }
        }
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

    /// destination(count) = bf16 of source(count), nearest even, NaN kept (PyTorch's rounding).
    public static func round(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<UInt16>, count: Int) {
        pd_convert_to_bf16(source, destination, count)
    }
}
