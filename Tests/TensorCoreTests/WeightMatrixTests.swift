import Foundation
import Testing
import TensorCore
import TestSupport

/// Half-precision weight products against fp32 BLAS on the same (rounded) weights.
@Suite struct WeightMatrixTests {
    /// A (rows, columns) matrix stored as `type`, and its exact fp32 values.
    func matrix(_ type: WeightStorageType, rows: Int, columns: Int, seed: UInt64) -> (WeightMatrix, Tensor) {
        let values = randomValues(rows * columns, seed: seed)
        let halves: [UInt16] = values.map {
            type == .bfloat16 ? HalfPrecision.bfloat16FromFloat($0) : Float16($0).bitPattern
        }
        let matrix = WeightMatrix(allocating: type, rows: rows, columns: columns) { destination in
            halves.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return (matrix, matrix.toTensor())
    }

    /// Both paths (direct for ≤ 8 input rows, fp32 panels above) and odd sizes (tails of the SIMD loops).
    @Test(arguments: [WeightStorageType.bfloat16, .float16], [1, 3, 8, 9, 40])
    func productsMatchFloat32(_ type: WeightStorageType, _ inputRows: Int) {
        for (rows, columns) in [(37, 45), (300, 4100)] {
            let (weights, exact) = matrix(type, rows: rows, columns: columns, seed: UInt64(rows))
            let input = Tensor(shape: [inputRows, columns], values: randomValues(inputRows * columns, seed: 7))
            let expected = Tensor(shape: [inputRows, rows])
            BLAS.matmulTransposedB(expected.pointer, input.pointer, exact.pointer, m: inputRows, n: rows, k: columns)
            let output = Tensor(shape: [inputRows, rows])
            weights.multiply(output.pointer, input.pointer, inputRows: inputRows, precision: .float32)
            // Only the summation order differs: a few fp32 ulps of the sums (|sum| ≲ √columns).
            #expect(maxAbsoluteDifference(output, expected) < 1e-4, "\(type) \(rows)x\(columns), \(inputRows) rows")
        }
    }

    /// `--compute bf16`: prefill products with bf16 weights round the input to bf16 and sum in fp32
    /// where the CPU has AVX512-BF16, and stay the fp32 product elsewhere; decode-sized products
    /// (≤ 8 rows) stay exact either way.
    @Test(arguments: [3, 40])
    func bfloat16PrecisionDispatch(_ inputRows: Int) {
        let (rows, columns) = (300, 4100)
        let (weights, exact) = matrix(.bfloat16, rows: rows, columns: columns, seed: 11)
        let input = Tensor(shape: [inputRows, columns], values: randomValues(inputRows * columns, seed: 5))
        let float32 = Tensor(shape: [inputRows, rows]), bfloat16 = Tensor(shape: [inputRows, rows])
        weights.multiply(float32.pointer, input.pointer, inputRows: inputRows, precision: .float32)
        weights.multiply(bfloat16.pointer, input.pointer, inputRows: inputRows, precision: .bfloat16)
        guard inputRows > WeightMatrix.directRowLimit && BFloat16Products.isAvailable else {
            #expect(bfloat16.toArray() == float32.toArray(), "without the bf16 path both precisions are the same product")
            return
        }
        let magnitudes = Tensor(shape: [inputRows, rows])  // (inputRows, rows) Σ|w · x| per output
        let absoluteInput = Tensor(shape: input.shape, values: input.toArray().map(abs))
        let absoluteWeights = Tensor(shape: exact.shape, values: exact.toArray().map(abs))
        BLAS.matmulTransposedB(magnitudes.pointer, absoluteInput.pointer, absoluteWeights.pointer, m: inputRows, n: rows, k: columns)
        // The bf16 path is the fp32 product of the bf16-rounded input, up to summation order: both
        // within (columns/16 + 5) · 2⁻²⁴ · Σ|w · x| (as in BFloat16ProductsTests)...
        let roundedInput = Tensor(shape: input.shape, values: input.toArray().map {
            HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat($0))
        })
        let expected = Tensor(shape: [inputRows, rows])
        BLAS.matmulTransposedB(expected.pointer, roundedInput.pointer, exact.pointer, m: inputRows, n: rows, k: columns)
        let summationBound = (Float(columns) / 16 + 5) * Float.ulpOfOne / 2 * 1.01
        let unordered = (0..<bfloat16.count).filter { abs(bfloat16[$0] - expected[$0]) > summationBound * magnitudes[$0] }
        #expect(unordered.isEmpty, "outputs past the summation bound: \(unordered.prefix(5))")
        // ...and differs from the exact product by the input's rounding: at most 2⁻⁹ of each |product|,
        // so per output 2⁻⁹ · Σ|w · x| (checked against 2⁻⁸ of it, for the sums' own rounding).
        let outside = (0..<bfloat16.count).filter { abs(bfloat16[$0] - float32[$0]) > magnitudes[$0] / 256 }
        #expect(outside.isEmpty, "outputs past the rounding bound: \(outside.prefix(5))")
        #expect(maxAbsoluteDifference(bfloat16, float32) > 0, "the bf16 path ran")
    }

    @Test func rowsAndTensorsConvertExactly() {
        let (weights, exact) = matrix(.bfloat16, rows: 5, columns: 19, seed: 3)
        let row = Tensor(shape: [19])
        weights.copyRow(3, to: row.pointer)
        #expect(row.toArray() == Array(exact.toArray()[(3 * 19)..<(4 * 19)]))
        #expect(weights.byteCount == 5 * 19 * 2)
        let shared = WeightMatrix(exact)
        #expect(shared.storageType == .float32 && shared.toTensor().toArray() == exact.toArray())
    }
}
