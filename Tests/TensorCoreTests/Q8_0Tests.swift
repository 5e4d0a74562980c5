import CKernels
import Foundation
import Testing
import TensorCore
import TestSupport

/// Q8_0 weights (GGUF's blocks of 32 int8 values with an fp16 scale): the decode kernel on every
/// path against a double-precision sum of the dequantized values, and WeightMatrix's products
/// against fp32 BLAS on the same values. The format itself is checked against llama.cpp's gguf-py
/// in ModelsTests (Q8_0CheckpointTests).
@Suite struct Q8_0Tests {
    @Test(arguments: [("avx512", UInt32(PD_CPU_AVX512F | PD_CPU_AVX2 | PD_CPU_FMA | PD_CPU_F16C)),
                      ("avx2", UInt32(PD_CPU_AVX2 | PD_CPU_FMA | PD_CPU_F16C)), ("plain", UInt32(0))])
    func decodeProductOnEveryPath(path: String, allowed: UInt32) {
        if path == "avx512" && !CPUFeatures.current.contains(.avx512f) { return }
        if path == "avx2" && !CPUFeatures.current.isSuperset(of: [.avx2, .fma, .f16c]) { return }
        var generator = SplitMix64(seed: 5)
        for (rows, columns, inputs) in [(1, 32, 1), (7, 64, 2), (9, 96, 3), (13, 2048, 1)] {
            let values = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &generator) }
            let (q, d) = values.withUnsafeBufferPointer { Q8_0.quantize($0.baseAddress!, count: values.count) }
            let input = (0..<(inputs * columns)).map { _ in Float.random(in: -1...1, using: &generator) }
            var output = [Float](repeating: .nan, count: inputs * rows)
            // Rows 1..<rows only: the range's start is honoured and row 0 is left alone.
            pd_dot_rows_q8_0_using(allowed, q, d, 1, rows - 1, columns, input, inputs, &output, rows)
            for i in 0..<inputs {
                #expect(output[i * rows].isNaN || rows == 1, "row 0 is outside the range")
                for r in 1..<max(rows, 1) {
                    var exact = 0.0, magnitude = 0.0
                    for c in 0..<columns {
                        let weight = Double(Float(Float16(bitPattern: d[(r * columns + c) / 32]))) * Double(q[r * columns + c])
                        let term = weight * Double(input[i * columns + c])
                        exact += term
                        magnitude += abs(term)
                    }
                    // fp32 sums within blocks and across them, each scale applied once per block.
                    let bound = (Double(columns) / 8 + 5) * Double(Float.ulpOfOne) / 2 * magnitude
                    #expect(abs(Double(output[i * rows + r]) - exact) <= bound, "\(path) (\(rows),\(columns),\(inputs)) [\(i), \(r)]")
                }
            }
        }
    }

    /// The decode product with the input quantized too (llama.cpp's scheme, `--compute bf16`) on
    /// every path: block sums are exact integers, so each path equals the double-precision formula
    /// within the fp32 rounding of the block terms and their sum.
    @Test(arguments: [("vnni", UInt32(PD_CPU_AVX512F | PD_CPU_AVX512VL | PD_CPU_AVX512_VNNI | PD_CPU_AVX2 | PD_CPU_FMA | PD_CPU_F16C)),
                      ("avx2", UInt32(PD_CPU_AVX2 | PD_CPU_FMA | PD_CPU_F16C)), ("plain", UInt32(0))])
    func decodeWithQuantizedInputOnEveryPath(path: String, allowed: UInt32) {
        if path == "vnni" && !CPUFeatures.current.isSuperset(of: [.avx512f, .avx512vl, .avx512vnni, .avx2, .fma, .f16c]) { return }
        if path == "avx2" && !CPUFeatures.current.isSuperset(of: [.avx2, .fma, .f16c]) { return }
        var generator = SplitMix64(seed: 9)
        for (rows, columns, inputs) in [(2, 32, 1), (7, 64, 2), (9, 96, 3), (5, 2048, 1)] {
            let values = (0..<(rows * columns)).map { _ in Float.random(in: -1...1, using: &generator) }
            let (q, d) = values.withUnsafeBufferPointer { Q8_0.quantize($0.baseAddress!, count: values.count) }
            let input = (0..<(inputs * columns)).map { _ in Float.random(in: -3...3, using: &generator) }
            let (xq, xdHalf) = input.withUnsafeBufferPointer { Q8_0.quantize($0.baseAddress!, count: input.count) }
            let xd = xdHalf.map { Float(Float16(bitPattern: $0)) }
            var output = [Float](repeating: .nan, count: inputs * rows)
            pd_dot_rows_q8_0_q8_using(allowed, q, d, 1, rows - 1, columns, xq, xd, inputs, &output, rows)
            let blocks = columns / 32
            for i in 0..<inputs {
                #expect(output[i * rows].isNaN, "row 0 is outside the range")
                for r in 1..<rows {
                    var exact = 0.0, magnitude = 0.0
                    for b in 0..<blocks {
                        var sum = 0
                        for j in 0..<32 { sum += Int(q[r * columns + b * 32 + j]) * Int(xq[i * columns + b * 32 + j]) }
                        let term = Double(sum) * Double(Float(Float16(bitPattern: d[r * blocks + b]))) * Double(xd[i * blocks + b])
                        exact += term
                        magnitude += abs(term)
                    }
                    let bound = (Double(blocks) + 5) * Double(Float.ulpOfOne) / 2 * magnitude
                    #expect(abs(Double(output[i * rows + r]) - exact) <= bound, "\(path) (\(rows),\(columns),\(inputs)) [\(i), \(r)]")
                }
            }
        }
    }

    /// `WeightMatrix.multiply` at `--compute bf16` with few input rows and Q8_0 weights: the input's
    /// own quantization moves each output by at most Σ_blocks max|x| · (1/254 + 2⁻¹¹) · Σ|w| of the block.
    @Test func decodeInFastModeStaysWithinTheInputsQuantization() {
        let (rows, columns, inputRows) = (40, 256, 3)
        let weights = WeightMatrix(quantizing: Tensor(shape: [rows, columns], values: randomValues(rows * columns, seed: 4)))
        let exact = weights.toTensor()
        let input = Tensor(shape: [inputRows, columns], values: randomValues(inputRows * columns, seed: 6))
        let float32 = Tensor(shape: [inputRows, rows]), fast = Tensor(shape: [inputRows, rows])
        weights.multiply(float32.pointer, input.pointer, inputRows: inputRows, precision: .float32)
        weights.multiply(fast.pointer, input.pointer, inputRows: inputRows, precision: .bfloat16)
        for i in 0..<inputRows {
            for r in 0..<rows {
                var bound = 0.0, magnitude = 0.0
                for b in 0..<(columns / 32) {
                    let block = (0..<32).map { b * 32 + $0 }
                    let amax = block.map { abs(Double(input[i * columns + $0])) }.max()!
                    bound += amax * (1.0 / 254 + 1.0 / 2048) * block.map { abs(Double(exact[r * columns + $0])) }.reduce(0, +)
                    magnitude += block.map { abs(Double(exact[r * columns + $0] * input[i * columns + $0])) }.reduce(0, +)
                }
                bound += 1e-5 * magnitude
                #expect(abs(Double(fast[i * rows + r]) - Double(float32[i * rows + r])) <= bound, "[\(i), \(r)]")
            }
        }
        #expect(fast.toArray() != float32.toArray(), "the fast mode quantizes the input")
    }

    /// Both paths of `WeightMatrix.multiply` (direct for ≤ 8 input rows, fp32 panels above), and
    /// `--compute bf16` (many rows: weights widened to bf16 48 rows at a time, the bf16 product).
    @Test(arguments: [1, 3, 9, 40])
    func productsMatchFloat32OnTheDequantizedValues(_ inputRows: Int) {
        for (rows, columns) in [(37, 64), (300, 4096)] {
            let original = Tensor(shape: [rows, columns], values: randomValues(rows * columns, seed: UInt64(rows)))
            let weights = WeightMatrix(quantizing: original)
            #expect(weights.storageType == .q8_0 && weights.byteCount == rows * columns + rows * columns / 16)
            let exact = weights.toTensor()
            // Quantization moves each value by at most half a step of its block (d / 2 = max|x| / 254)
            // plus |q| ≤ 127 times the fp16 rounding of d (≤ 2⁻¹¹ d).
            for block in 0..<(rows * columns / 32) {
                let values = (0..<32).map { original[block * 32 + $0] }, limit = values.map(abs).max()! * (1.0 / 254 + 1.0 / 2048)
                #expect((0..<32).allSatisfy { abs(exact[block * 32 + $0] - values[$0]) <= limit }, "block \(block)")
            }
            let input = Tensor(shape: [inputRows, columns], values: randomValues(inputRows * columns, seed: 7))
            let expected = Tensor(shape: [inputRows, rows])
            BLAS.matmulTransposedB(expected.pointer, input.pointer, exact.pointer, m: inputRows, n: rows, k: columns)
            let float32 = Tensor(shape: [inputRows, rows]), bfloat16 = Tensor(shape: [inputRows, rows])
            weights.multiply(float32.pointer, input.pointer, inputRows: inputRows, precision: .float32)
            weights.multiply(bfloat16.pointer, input.pointer, inputRows: inputRows, precision: .bfloat16)
            #expect(maxAbsoluteDifference(float32, expected) < 1e-4, "\(rows)x\(columns), \(inputRows) rows")
            if inputRows <= WeightMatrix.directRowLimit { continue }  // the input quantized: decodeInFastMode… checks it
            guard BFloat16Products.isAvailable else {
                #expect(bfloat16.toArray() == float32.toArray(), "without bf16 products the prefill stays fp32")
                continue
            }
            // bf16: the input and each d · q rounded to bf16 (each ≤ 2⁻⁹ relative, so each product
            // within 2⁻⁸ · 1.01), then fp32 sums (as in the bf16 GEMM test).
            for i in 0..<inputRows {
                for r in 0..<rows {
                    var magnitude = 0.0
                    for c in 0..<columns { magnitude += abs(Double(exact[r * columns + c]) * Double(input[i * columns + c])) }
                    let bound = (1.01 / 256 + (Double(columns) / 16 + 5) * Double(Float.ulpOfOne) / 2) * magnitude
                    #expect(abs(Double(bfloat16[i * rows + r]) - Double(expected[i * rows + r])) <= bound, "bf16 [\(i), \(r)]")
                }
            }
        }
    }

    @Test func dequantizingAnyRangeGivesTheSameValues() {
        let original = Tensor(shape: [3, 96], values: randomValues(288, seed: 2))
        let weights = WeightMatrix(quantizing: original), whole = weights.toTensor()
        for (first, count) in [(0, 1), (31, 2), (40, 100), (287, 1), (5, 0)] {
            var part = [Float](repeating: .nan, count: count)
            weights.convert(from: first, count: count, to: &part)
            #expect(part == Array(whole.toArray()[first..<(first + count)]), "[\(first), +\(count))")
        }
    }
}
