import Foundation
import Testing
import TensorCore

/// Finite-difference checks of every backward kernel: for a scalar L = Σ forward(x) ∘ R with a
/// fixed random R, the backward given doutput = R must equal (L(x + h) − L(x − h)) / 2h for each
/// input element, and likewise for each weight. fp32 forwards with h = 1e-2: the central
/// difference is then accurate to ~1e-3 of the largest gradient.
struct FiniteDifference {
    static let step: Float = 1e-2

    /// Numeric gradient of `loss` with respect to each element of `values`, perturbed in place.
    static func gradient(of values: Tensor, _ loss: () -> Double) -> [Double] {
        (0..<values.count).map { index in
            let original = values[index]
            values[index] = original + step
            let plus = loss()
            values[index] = original - step
            let minus = loss()
            values[index] = original
            return (plus - minus) / Double(2 * step)
        }
    }

    /// max |analytic − numeric| / max(1e-3, max |numeric|).
    static func relativeError(_ analytic: Tensor, _ numeric: [Double]) -> Double {
        let scale = max(1e-3, numeric.map(abs).max() ?? 0)
        let worst = zip(analytic.toArray(), numeric).map { abs(Double($0) - $1) }.max() ?? 0
        return worst / scale
    }
}

/// Σ output(count) · weights(count) in Double.
func weightedSum(_ output: Tensor, _ weights: Tensor) -> Double {
    (0..<output.count).reduce(0.0) { $0 + Double(output[$1]) * Double(weights[$1]) }
}

func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1, offset: Float = 0) -> Tensor {
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, values: randomValues(count, seed: seed).map { offset + scale * $0 })
}

@Suite struct BackwardKernelTests {
    let tolerance = 3e-3

    @Test func linearBackwardMatchesFiniteDifferences() {
        let rows = 5, inFeatures = 7, outFeatures = 4
        let input = randomTensor([rows, inFeatures], seed: 1)
        let weight = randomTensor([outFeatures, inFeatures], seed: 2)
        let bias = randomTensor([outFeatures], seed: 3)
        let upstream = randomTensor([rows, outFeatures], seed: 4)
        func loss() -> Double {
            let output = Tensor(shape: [rows, outFeatures])
            BLAS.matmulTransposedB(output.pointer, input.pointer, weight.pointer, m: rows, n: outFeatures, k: inFeatures)
            addBias(output.pointer, bias.pointer, rows: rows, columns: outFeatures)
            return weightedSum(output, upstream)
        }
        let dInput = Tensor(shape: input.shape), dWeight = Tensor(shape: weight.shape), dBias = Tensor(shape: bias.shape)
        linearBackward(
            dinput: dInput.pointer, dweight: dWeight.pointer, dbias: dBias.pointer, doutput: upstream.pointer,
            input: input.pointer, weight: weight.pointer, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
        #expect(FiniteDifference.relativeError(dInput, FiniteDifference.gradient(of: input, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dWeight, FiniteDifference.gradient(of: weight, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dBias, FiniteDifference.gradient(of: bias, loss)) < tolerance)
    }

    @Test func backwardKernelsAccumulate() {
        // Calling a backward twice doubles its gradients: callers rely on += for residuals and ties.
        let rows = 3, dim = 6
        let input = randomTensor([rows, dim], seed: 5), weight = randomTensor([dim], seed: 6, scale: 0.1, offset: 1)
        let upstream = randomTensor([rows, dim], seed: 7)
        let once = Tensor(shape: input.shape), twice = Tensor(shape: input.shape)
        let weightOnce = Tensor(shape: weight.shape), weightTwice = Tensor(shape: weight.shape)
        rmsNormBackward(dinput: once.pointer, dweight: weightOnce.pointer, doutput: upstream.pointer, input: input.pointer,
                        weight: weight.pointer, rows: rows, dim: dim, epsilon: 1e-5)
        for _ in 0..<2 {
            rmsNormBackward(dinput: twice.pointer, dweight: weightTwice.pointer, doutput: upstream.pointer, input: input.pointer,
                            weight: weight.pointer, rows: rows, dim: dim, epsilon: 1e-5)
        }
        for i in 0..<once.count { #expect(abs(2 * once[i] - twice[i]) <= 1e-6 * max(1, abs(twice[i]))) }
        for i in 0..<weightOnce.count { #expect(abs(2 * weightOnce[i] - weightTwice[i]) <= 1e-6 * max(1, abs(weightTwice[i]))) }
    }

    @Test func rmsNormBackwardMatchesFiniteDifferences() {
        let rows = 4, dim = 8
        let input = randomTensor([rows, dim], seed: 11), weight = randomTensor([dim], seed: 12, scale: 0.2, offset: 1)
        let upstream = randomTensor([rows, dim], seed: 13)
        func loss() -> Double {
            let output = Tensor(shape: input.shape)
            rmsNormForward(output.pointer, input.pointer, weight.pointer, rows: rows, dim: dim, epsilon: 1e-5)
            return weightedSum(output, upstream)
        }
        let dInput = Tensor(shape: input.shape), dWeight = Tensor(shape: weight.shape)
        rmsNormBackward(dinput: dInput.pointer, dweight: dWeight.pointer, doutput: upstream.pointer, input: input.pointer,
                        weight: weight.pointer, rows: rows, dim: dim, epsilon: 1e-5)
        #expect(FiniteDifference.relativeError(dInput, FiniteDifference.gradient(of: input, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dWeight, FiniteDifference.gradient(of: weight, loss)) < tolerance)
    }

    @Test func layerNormBackwardMatchesFiniteDifferences() {
        let rows = 4, dim = 8
        let input = randomTensor([rows, dim], seed: 21), weight = randomTensor([dim], seed: 22, scale: 0.2, offset: 1)
        let bias = randomTensor([dim], seed: 23), upstream = randomTensor([rows, dim], seed: 24)
        func loss() -> Double {
            let output = Tensor(shape: input.shape)
            layerNormForward(output.pointer, input.pointer, weight.pointer, bias.pointer, rows: rows, dim: dim, epsilon: 1e-5)
            return weightedSum(output, upstream)
        }
        let dInput = Tensor(shape: input.shape), dWeight = Tensor(shape: weight.shape), dBias = Tensor(shape: bias.shape)
        layerNormBackward(dinput: dInput.pointer, dweight: dWeight.pointer, dbias: dBias.pointer, doutput: upstream.pointer,
                          input: input.pointer, weight: weight.pointer, rows: rows, dim: dim, epsilon: 1e-5)
        #expect(FiniteDifference.relativeError(dInput, FiniteDifference.gradient(of: input, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dWeight, FiniteDifference.gradient(of: weight, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dBias, FiniteDifference.gradient(of: bias, loss)) < tolerance)
    }

    @Test func activationBackwardsMatchFiniteDifferences() {
        let count = 40
        let input = randomTensor([count], seed: 31, scale: 3), up = randomTensor([count], seed: 32, scale: 2)
        let upstream = randomTensor([count], seed: 33)
        // GELU (exact erf) and quick_gelu.
        for isQuick in [false, true] {
            func loss() -> Double {
                let output = input.copy()
                if isQuick { quickGeluForward(output.pointer, count: count) } else { geluForward(output.pointer, count: count) }
                return weightedSum(output, upstream)
            }
            let dInput = Tensor(shape: input.shape)
            if isQuick {
                quickGeluBackward(dInput.pointer, doutput: upstream.pointer, input: input.pointer, count: count)
            } else {
                geluBackward(dInput.pointer, doutput: upstream.pointer, input: input.pointer, count: count)
            }
            #expect(FiniteDifference.relativeError(dInput, FiniteDifference.gradient(of: input, loss)) < tolerance, "quick \(isQuick)")
        }
        // SwiGLU: both inputs.
        func swigluLoss() -> Double {
            let output = Tensor(shape: input.shape)
            swigluForward(output.pointer, gate: input.pointer, up: up.pointer, count: count)
            return weightedSum(output, upstream)
        }
        let dGate = Tensor(shape: input.shape), dUp = Tensor(shape: up.shape)
        swigluBackward(dgate: dGate.pointer, dup: dUp.pointer, doutput: upstream.pointer, gate: input.pointer, up: up.pointer, count: count)
        #expect(FiniteDifference.relativeError(dGate, FiniteDifference.gradient(of: input, swigluLoss)) < tolerance)
        #expect(FiniteDifference.relativeError(dUp, FiniteDifference.gradient(of: up, swigluLoss)) < tolerance)
    }

    @Test func rotaryInverseIsTheBackward() {
        let tokens = 5, heads = 3, headDim = 8
        let rotary = RotaryEmbedding(headDim: headDim, theta: 10000)
        let positions = [0, 3, 4, 9, 17]
        let input = randomTensor([tokens, heads * headDim], seed: 41), upstream = randomTensor([tokens, heads * headDim], seed: 42)
        func loss() -> Double {
            let output = input.copy()
            rotary.apply(output.pointer, tokens: tokens, heads: heads, positions: positions)
            return weightedSum(output, upstream)
        }
        let dInput = upstream.copy()
        rotary.apply(dInput.pointer, tokens: tokens, heads: heads, positions: positions, inverse: true)
        #expect(FiniteDifference.relativeError(dInput, FiniteDifference.gradient(of: input, loss)) < tolerance)
    }

    /// Causal GQA attention (several query blocks would need > 256 rows; one block is the case here)
    /// and non-causal attention with all keys visible, as the vision tower uses it.
    @Test(arguments: [(causal: true, heads: 4, keyValueHeads: 2), (causal: false, heads: 2, keyValueHeads: 2)])
    func attentionBackwardMatchesFiniteDifferences(causal: Bool, heads: Int, keyValueHeads: Int) {
        let tokens = 6, headDim = 4
        let queries = randomTensor([tokens, heads * headDim], seed: 51)
        let keys = randomTensor([tokens, keyValueHeads * headDim], seed: 52)
        let values = randomTensor([tokens, keyValueHeads * headDim], seed: 53)
        let upstream = randomTensor([tokens, heads * headDim], seed: 54)
        let visible: (Int) -> Int = causal ? { $0 + 1 } : { _ in tokens }
        func forward() -> Tensor {
            let output = Tensor(shape: [tokens, heads * headDim])
            // More rows than the few-query limit, so the BLAS path (the one training uses) runs.
            multiHeadAttention(output.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer,
                               queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: keyValueHeads,
                               headDim: headDim, visibleKeys: visible)
            return output
        }
        func loss() -> Double { weightedSum(forward(), upstream) }
        let output = forward()
        let dQueries = Tensor(shape: queries.shape), dKeys = Tensor(shape: keys.shape), dValues = Tensor(shape: values.shape)
        multiHeadAttentionBackward(
            dqueries: dQueries.pointer, dkeys: dKeys.pointer, dvalues: dValues.pointer, doutput: upstream.pointer,
            queries: queries.pointer, keys: keys.pointer, values: values.pointer, output: output.pointer,
            queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim, visibleKeys: visible)
        #expect(FiniteDifference.relativeError(dQueries, FiniteDifference.gradient(of: queries, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dKeys, FiniteDifference.gradient(of: keys, loss)) < tolerance)
        #expect(FiniteDifference.relativeError(dValues, FiniteDifference.gradient(of: values, loss)) < tolerance)
    }

    @Test func crossEntropyMatchesDefinitionAndFiniteDifferences() {
        let rows = 3, vocab = 11
        let logits = randomTensor([rows, vocab], seed: 61, scale: 4)
        let targets = [2, 10, 0]
        let scale: Float = 1 / 3
        func loss() -> Double {
            let scratch = Tensor(shape: logits.shape)
            return Double(scale) * crossEntropyForwardBackward(dlogits: scratch.pointer, logits: logits.pointer, targets: targets, vocab: vocab, gradientScale: scale)
        }
        // The definition in Double: −log softmax at the target.
        var expected = 0.0
        for row in 0..<rows {
            let values = (0..<vocab).map { Double(logits[row * vocab + $0]) }
            let maximum = values.max()!
            let logSum = log(values.map { exp($0 - maximum) }.reduce(0, +)) + maximum
            expected += logSum - values[targets[row]]
        }
        let dLogits = Tensor(shape: logits.shape)
        let total = crossEntropyForwardBackward(dlogits: dLogits.pointer, logits: logits.pointer, targets: targets, vocab: vocab, gradientScale: scale)
        #expect(abs(total - expected) < 1e-5 * expected)
        #expect(FiniteDifference.relativeError(dLogits, FiniteDifference.gradient(of: logits, loss)) < tolerance)
    }
}
