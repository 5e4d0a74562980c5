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
            weights.multiply(output.pointer, input.pointer, inputRows: inputRows)
            // Only the summation order differs: a few fp32 ulps of the sums (|sum| ≲ √columns).
            #expect(maxAbsoluteDifference(output, expected) < 1e-4, "\(type) \(rows)x\(columns), \(inputRows) rows")
        }
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
