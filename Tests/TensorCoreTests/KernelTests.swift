import Foundation
import Testing
import TensorCore
import TestSupport

/// Deterministic pseudo-random values in [-1, 1).
func randomValues(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % (1 << 24)) / Float(1 << 23) - 1
    }
}

@Suite struct KernelTests {
    @Test func matmulTransposedBMatchesNaiveProduct() {
        let m = 7, n = 5, k = 13
        let a = Tensor(shape: [m, k], values: randomValues(m * k, seed: 1))
        let b = Tensor(shape: [n, k], values: randomValues(n * k, seed: 2))
        let c = Tensor(shape: [m, n])
        BLAS.matmulTransposedB(c.pointer, a.pointer, b.pointer, m: m, n: n, k: k)
        var worst: Double = 0
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = 0
                for p in 0..<k { sum += Double(a[i * k + p]) * Double(b[j * k + p]) }
                worst = max(worst, abs(sum - Double(c[i * n + j])))
            }
        }
        #expect(worst < 1e-5)
        // The plain product: c2(m, k) = c(m, n) · b(n, k).
        let c2 = Tensor(shape: [m, k])
        BLAS.matmul(c2.pointer, c.pointer, b.pointer, m: m, n: k, k: n)
        var worst2: Double = 0
        for i in 0..<m {
            for j in 0..<k {
                var sum: Double = 0
                for p in 0..<n { sum += Double(c[i * n + p]) * Double(b[p * k + j]) }
                worst2 = max(worst2, abs(sum - Double(c2[i * k + j])))
            }
        }
        #expect(worst2 < 1e-5)
    }

    @Test func rmsNormMatchesDoublePrecisionDefinition() {
        let rows = 33, dim = 48
        let input = Tensor(shape: [rows, dim], values: randomValues(rows * dim, seed: 3))
        let weight = Tensor(shape: [dim], values: randomValues(dim, seed: 4))
        let output = Tensor(shape: [rows, dim])
        rmsNormForward(output.pointer, input.pointer, weight.pointer, rows: rows, dim: dim, epsilon: 1e-5)
        var worst: Double = 0
        for r in 0..<rows {
            var meanSquare: Double = 0
            for i in 0..<dim { meanSquare += Double(input[r * dim + i] * input[r * dim + i]) }
            meanSquare /= Double(dim)
            for i in 0..<dim {
                let expected = Double(weight[i]) * Double(input[r * dim + i]) / (meanSquare + 1e-5).squareRoot()
                worst = max(worst, abs(expected - Double(output[r * dim + i])))
            }
        }
        #expect(worst < 1e-5)
    }

    @Test func layerNormMatchesDoublePrecisionDefinition() {
        let rows = 9, dim = 20
        let input = Tensor(shape: [rows, dim], values: randomValues(rows * dim, seed: 5).map { $0 * 3 + 1 })
        let weight = Tensor(shape: [dim], values: randomValues(dim, seed: 6))
        let bias = Tensor(shape: [dim], values: randomValues(dim, seed: 7))
        let output = Tensor(shape: [rows, dim])
        layerNormForward(output.pointer, input.pointer, weight.pointer, bias.pointer, rows: rows, dim: dim, epsilon: 1e-5)
        var worst: Double = 0
        for r in 0..<rows {
            let x = (0..<dim).map { Double(input[r * dim + $0]) }
            let mean = x.reduce(0, +) / Double(dim)
            let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
            for i in 0..<dim {
                let expected = (x[i] - mean) / (variance + 1e-5).squareRoot() * Double(weight[i]) + Double(bias[i])
                worst = max(worst, abs(expected - Double(output[r * dim + i])))
            }
        }
        #expect(worst < 1e-5)
    }

    @Test func maskedSoftmaxRowsSumToOneAndZeroTheMask() {
        let rows = 4, columns = 6
        let values = Tensor(shape: [rows, columns], values: randomValues(rows * columns, seed: 8).map { $0 * 50 })
        softmaxRowsForward(values.pointer, rows: rows, columns: columns) { $0 + 2 }
        for r in 0..<rows {
            let valid = r + 2
            let sum = (0..<valid).reduce(Float(0)) { $0 + values[r * columns + $1] }
            #expect(abs(sum - 1) < 1e-6)
            for c in valid..<columns { #expect(values[r * columns + c] == 0) }
        }
    }

    @Test func swigluIsSiluTimesUp() {
        let gate = Tensor(shape: [5], values: [-3, -0.5, 0, 0.5, 4])
        let up = Tensor(shape: [5], values: [1, 2, 3, 4, 5])
        let expected = (0..<5).map { gate[$0] / (1 + exp(-gate[$0])) * up[$0] }
        let output = Tensor(shape: [5])
        swigluForward(output.pointer, gate: gate.pointer, up: up.pointer, count: 5)
        for i in 0..<5 { #expect(abs(output[i] - expected[i]) < 1e-6) }
    }

    /// Rotation keeps each (i, i + half) pair's length and is the identity at position 0;
    /// rotating by p then by q equals rotating by p + q (up to fp32 error).
    @Test func rotaryEmbeddingIsARotationOfHalves() {
        let headDim = 8, heads = 2
        let rotary = RotaryEmbedding(headDim: headDim, theta: 10000)
        #expect(rotary.inverseFrequencies[0] == 1)
        #expect(abs(rotary.inverseFrequencies[1] - 0.1) < 1e-7)
        let original = randomValues(heads * headDim, seed: 9)
        let atZero = Tensor(shape: [1, heads, headDim], values: original)
        rotary.apply(atZero.pointer, tokens: 1, heads: heads, positions: [0])
        #expect(atZero.toArray() == original)

        let once = Tensor(shape: [1, heads, headDim], values: original)
        rotary.apply(once.pointer, tokens: 1, heads: heads, positions: [3])
        rotary.apply(once.pointer, tokens: 1, heads: heads, positions: [4])
        let direct = Tensor(shape: [1, heads, headDim], values: original)
        rotary.apply(direct.pointer, tokens: 1, heads: heads, positions: [7])
        #expect(maxAbsoluteDifference(once, direct) < 1e-5)
        for head in 0..<heads {
            for i in 0..<headDim / 2 {
                let base = head * headDim
                let before = original[base + i] * original[base + i] + original[base + i + 4] * original[base + i + 4]
                let after = direct[base + i] * direct[base + i] + direct[base + i + 4] * direct[base + i + 4]
                #expect(abs(before - after) < 1e-5)
            }
        }
    }

    @Test func parallelForVisitsEveryIndexOnce() {
        for count in [0, 1, 2, 3, 17, 1000] {
            let visits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
            visits.initialize(repeating: 0, count: max(count, 1))
            defer { visits.deallocate() }
            ThreadPool.parallelFor(count) { range in for i in range { visits[i] += 1 } }
            #expect((0..<count).allSatisfy { visits[$0] == 1 })
        }
    }

    /// Thousands of short loops back to back (as decode runs them), loops inside loops, and loops
    /// from several threads at once: every index of every loop exactly once.
    @Test func parallelForUnderNestingAndConcurrency() {
        let count = 96
        let visits = UnsafeMutablePointer<Int>.allocate(capacity: 4 * count * count)  // (caller, outer, inner)
        visits.initialize(repeating: 0, count: 4 * count * count)
        defer { visits.deallocate() }
        for _ in 0..<2_000 {
            ThreadPool.parallelFor(count, chunksPerThread: 8) { range in for i in range { visits[i] += 1 } }
        }
        #expect((0..<count).allSatisfy { visits[$0] == 2_000 })
        visits.update(repeating: 0, count: 4 * count * count)
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            let mine = visits + caller * count * count
            for _ in 0..<20 {
                ThreadPool.parallelFor(count, chunksPerThread: 4) { outer in
                    for o in outer {
                        ThreadPool.parallelFor(count, chunksPerThread: 2) { inner in for i in inner { mine[o * count + i] += 1 } }
                    }
                }
            }
        }
        #expect((0..<(4 * count * count)).allSatisfy { visits[$0] == 20 })
    }

    @Test func argmaxTakesTheFirstOfTies() {
        let values: [Float] = [1, 5, 2, 5, -1]
        #expect(values.withUnsafeBufferPointer { argmax($0.baseAddress!, count: 5) } == 1)
    }
}

@Suite struct AttentionTests {
    /// How the attention is computed: `multiHeadAttention`'s own choice, or one path forced.
    enum Path: String, CaseIterable { case chosen, blocked, tiled }

    /// Attention against a double-precision definition, for the BLAS path (many queries), the tiled
    /// kernel (many queries, head dimension 64 or 128, AVX-512) and the few-query SIMD path
    /// (decode), with GQA, a causal offset and all keys visible (the vision tower); tiles of 64 rows
    /// and blocks of 64 keys whole and partial.
    @Test(arguments: [(1, 24, true), (3, 24, true), (12, 24, true), (70, 64, true), (130, 128, true), (70, 64, false), (9, 128, false)])
    func attentionMatchesTheDefinition(_ queryCount: Int, _ headDim: Int, _ causal: Bool) throws {
        for path in Path.allCases {
            let tiledApplies = CPUFeatures.current.contains(.avx512f) && (headDim == 64 || headDim == 128)
            if path == .tiled && !tiledApplies { continue }
            try check(queryCount: queryCount, headDim: headDim, causal: causal, path: path)
        }
    }

    func check(queryCount: Int, headDim: Int, causal: Bool, path: Path) throws {
        let heads = 4, keyValueHeads = 2, past = 5
        let keyCount = past + queryCount
        let queries = Tensor(shape: [queryCount, heads * headDim], values: randomValues(queryCount * heads * headDim, seed: 11))
        let keys = Tensor(shape: [keyCount, keyValueHeads * headDim], values: randomValues(keyCount * keyValueHeads * headDim, seed: 12).map { $0 * 3 })
        let values = Tensor(shape: [keyCount, keyValueHeads * headDim], values: randomValues(keyCount * keyValueHeads * headDim, seed: 13))
        let output = Tensor(shape: [queryCount, heads * headDim])
        let visibleKeys: (Int) -> Int = { causal ? past + $0 + 1 : keyCount }
        switch path {
        case .chosen:
            multiHeadAttention(
                output.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer, queryCount: queryCount,
                keyCount: keyCount, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visibleKeys)
        case .blocked:
            blockedAttention(
                output.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer, queryCount: queryCount,
                keyCount: keyCount, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visibleKeys)
        case .tiled:
            let ran = tiledAttention(
                output.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer, queryCount: queryCount,
                keyCount: keyCount, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visibleKeys)
            try #require(ran, "the tiled kernel applies to head dimension \(headDim) on this CPU")
        }
        var worst: Double = 0
        for row in 0..<queryCount {
            for head in 0..<heads {
                let group = head / (heads / keyValueHeads)
                let visible = visibleKeys(row)
                let scores = (0..<visible).map { key in
                    (0..<headDim).reduce(0.0) { $0 + Double(queries[row * heads * headDim + head * headDim + $1]) * Double(keys[key * keyValueHeads * headDim + group * headDim + $1]) } / Double(headDim).squareRoot()
                }
                let maximum = scores.max()!
                let weights = scores.map { exp($0 - maximum) }
                let total = weights.reduce(0, +)
                for d in 0..<headDim {
                    let expected = (0..<visible).reduce(0.0) { $0 + weights[$1] / total * Double(values[$1 * keyValueHeads * headDim + group * headDim + d]) }
                    worst = max(worst, abs(expected - Double(output[row * heads * headDim + head * headDim + d])))
                }
            }
        }
        #expect(worst < 1e-5, "\(path), \(queryCount) queries, head dimension \(headDim), causal \(causal): \(worst)")
    }
}
