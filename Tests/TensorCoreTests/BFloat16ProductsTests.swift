import CKernels
import Foundation
import Testing
import TensorCore

/// The C kernels (CKernels) against direct computations: CPU feature detection against
/// /proc/cpuinfo, the bf16 rounding against `HalfPrecision`, the bf16 product against a sum in
/// double of the same bf16 values, the streaming sum, the peak loops' operation counts.
struct BFloat16ProductsTests {
    /// The flags line of /proc/cpuinfo (Linux), or nil elsewhere.
    static func cpuinfoFlags() -> Set<String>? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        return Set(line.split(separator: ":", maxSplits: 1)[1].split(separator: " ").map(String.init))
    }

    @Test func featuresAgreeWithTheKernelsReport() throws {
        guard let flags = Self.cpuinfoFlags() else { return }
        for name in CPUFeatures.current.names {
            #expect(flags.contains(name), "CPUID says \(name), /proc/cpuinfo does not")
        }
        // The kernel reports every feature we test for (the OS saves the registers on Linux).
        for name in ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"] where flags.contains(name) {
            #expect(CPUFeatures.current.names.contains(name), "/proc/cpuinfo has \(name), CPUID detection missed it")
        }
        #expect(BFloat16Products.isAvailable == flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512_bf16"]))
    }

    @Test func roundingIsPyTorchs() {
        var values: [Float] = [0, -0, 1, -1, 1.00390625, 1.01171875, 3.0e38, -3.4e38, .infinity, -.infinity, .nan,
                               1e-40, -1e-42, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 65504, 0.1]
        // Ties: exactly halfway between two bf16 values, both parities of the kept bit.
        values += [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_7FFF)]
        var generator = SplitMix64(seed: 7)
        for _ in 0..<4096 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))) }
        var rounded = [UInt16](repeating: 0, count: values.count)
        BFloat16Products.round(values, to: &rounded, count: values.count)
        for (value, bits) in zip(values, rounded) {
            if value.isNaN {
                #expect(HalfPrecision.floatFromBFloat16(bits).isNaN, "NaN \(value.bitPattern) stays NaN")
            } else {
                #expect(bits == HalfPrecision.bfloat16FromFloat(value), "\(value) (\(String(value.bitPattern, radix: 16)))")
            }
        }
    }

    /// Shapes that exercise full 8 × 48 tiles, edge rows and columns, k below, at and past the
    /// 32-element step, panels packed whole and in blocks of 16 pairs, a decoder-sized k, and
    /// (k = 65536: 64 rows per 8 MB pass) rows in two passes over the panels, the last tile partial.
    static let shapes: [(m: Int, n: Int, k: Int)] = [(1, 1, 1), (4, 6, 32), (5, 7, 33), (13, 50, 100), (8, 97, 31), (9, 120, 4096), (70, 50, 65536)]

    @Test(arguments: shapes.indices)
    func productEqualsADirectSumOfTheSameBFloat16Values(shapeIndex: Int) throws {
        let (m, n, k) = Self.shapes[shapeIndex]
        var generator = SplitMix64(seed: UInt64(shapeIndex + 1))
        let input = (0..<(m * k)).map { _ in Float.random(in: -2...2, using: &generator) }
        let weights = (0..<(n * k)).map { _ in HalfPrecision.bfloat16FromFloat(Float.random(in: -0.1...0.1, using: &generator)) }
        var output = [Float](repeating: .nan, count: m * n)
        let ran = BFloat16Products.multiply(&output, input, bfloat16Weights: weights, m: m, n: n, k: k)
        guard BFloat16Products.isAvailable else {
            #expect(!ran, "the bf16 kernel refuses a CPU without AVX512-BF16")
            #expect(output.allSatisfy { $0.isNaN }, "and writes nothing")
            return
        }
        #expect(ran)
        // Products of two bf16 values are exact in fp32; what remains is the fp32 summation of k
        // terms, whose worst case is (k − 1) · 2⁻²⁴ · Σ|terms|. Rounding errors are not all
        // worst-case: the check asks for a sixteenth of that, (k/16 + 5) · 2⁻²⁴ · Σ|terms|.
        let unit = Double(Float.ulpOfOne) / 2
        var worstShare = 0.0
        for row in 0..<m {
            for column in 0..<n {
                var exact = 0.0, magnitude = 0.0
                for p in 0..<k {
                    let a = Double(HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat(input[row * k + p])))
                    let term = a * Double(HalfPrecision.floatFromBFloat16(weights[column * k + p]))
                    exact += term
                    magnitude += abs(term)
                }
                let bound = (Double(k) / 16 + 5) * unit * magnitude
                let error = abs(Double(output[row * n + column]) - exact)
                #expect(error <= bound, "(\(m),\(n),\(k)) at [\(row), \(column)]: \(output[row * n + column]) vs \(exact)")
                worstShare = max(worstShare, error / max(bound, .leastNonzeroMagnitude))
            }
        }
        print("bf16 product (\(m), \(n), \(k)): worst error \(String(format: "%.2f", worstShare)) of the summation bound")
    }

    /// The decode product (`pd_dot_rows_bf16`) on each path this CPU allows (AVX-512, AVX2 + FMA,
    /// plain C): exact widening, so every path equals a double-precision sum within fp32 summation error.
    @Test(arguments: [("avx512", UInt32(PD_CPU_AVX512F | PD_CPU_AVX2 | PD_CPU_FMA)), ("avx2", UInt32(PD_CPU_AVX2 | PD_CPU_FMA)), ("plain", UInt32(0))])
    func decodeProductOnEveryPath(path: String, allowed: UInt32) {
        if path == "avx512" && !CPUFeatures.current.contains(.avx512f) { return }
        if path == "avx2" && !CPUFeatures.current.isSuperset(of: [.avx2, .fma]) { return }
        var generator = SplitMix64(seed: 3)
        for (rows, columns, inputs) in [(1, 1, 1), (7, 33, 2), (3, 43, 2), (9, 100, 3), (5, 323, 2), (13, 2050, 1)] {
            let weights = (0..<(rows * columns)).map { _ in HalfPrecision.bfloat16FromFloat(Float.random(in: -1...1, using: &generator)) }
            let input = (0..<(inputs * columns)).map { _ in Float.random(in: -1...1, using: &generator) }
            var output = [Float](repeating: .nan, count: inputs * rows)
            // Rows 1..<rows only: the range's start is honoured and row 0 is left alone.
            pd_dot_rows_bf16_using(allowed, weights, 1, rows - 1, columns, input, inputs, &output, rows)
            for i in 0..<inputs {
                #expect(output[i * rows].isNaN, "row 0 is outside the range")
                for r in 1..<rows {
                    var exact = 0.0, magnitude = 0.0
                    for c in 0..<columns {
                        let term = Double(HalfPrecision.floatFromBFloat16(weights[r * columns + c])) * Double(input[i * columns + c])
                        exact += term
                        magnitude += abs(term)
                    }
                    // A sixth-to-eighth of the worst case (columns · 2⁻²⁴ · Σ|terms|), as in the GEMM test.
                    let bound = (Double(columns) / 8 + 5) * Double(Float.ulpOfOne) / 2 * magnitude
                    #expect(abs(Double(output[i * rows + r]) - exact) <= bound, "\(path) (\(rows),\(columns),\(inputs)) [\(i), \(r)]")
                }
            }
        }
    }

    @Test func streamingSumIsTheSum() {
        for count in [0, 1, 63, 64, 1000, 100_003] {
            let values = (0..<count).map { Float($0 % 17) * 0.25 }
            let expected = values.reduce(0.0) { $0 + Double($1) }
            let sum = pd_stream_sum(values, count)
            #expect(abs(Double(sum) - expected) <= 1e-6 * max(expected, 1), "count \(count): \(sum) vs \(expected)")
        }
    }

    @Test func peakLoopsCountTheirOperations() {
        var checksum: Float = 0
        let lanes = CPUFeatures.current.contains(.avx512f) ? 16 : 8
        #expect(pd_peak_fp32(1000, &checksum) == Double(2 * lanes * 12 * 1000))
        #expect(checksum.isFinite && checksum > 0)
        let bf16 = pd_peak_bf16(1000, &checksum)
        #expect(bf16 == (BFloat16Products.isAvailable ? Double(2 * 32 * 12 * 1000) : 0))
    }
}
