import Foundation
import Models
import TensorCore

// MARK: - Language: one LLaMA decoder layer, forward keeping what backward needs, and backward

extension LlamaModel {
    /// Backward of `forwardKeepingActivations` without a cache (a training sample attending causally
    /// to itself): from doutput(tokens, hidden) returns dinput(tokens, hidden),
    /// accumulating the layer's weight gradients into `gradients` (nil: frozen, inputs only).
    func trainingBackward(layer index: Int, tape: DecoderLayerActivations, doutput: Tensor, gradients: LlamaDecoderLayer?) -> Tensor {
        let layer = layers[index]
        let c = configuration
        let tokens = doutput.size(0), width = hiddenSize, intermediate = c.intermediateSize
        let heads = c.numAttentionHeads, keyValueHeads = c.numKeyValueHeads, headDim = c.headDim
        let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim

        // MLP branch.
        let dActivated = Tensor(shape: [tokens, intermediate])  // (tokens, intermediate)
        backward(layer.downProjection, gradients?.downProjection, dinput: dActivated, doutput: doutput, input: tape.activated)
        let dGate = Tensor(shape: [tokens, intermediate]), dUp = Tensor(shape: [tokens, intermediate])  // (tokens, intermediate)
        swigluBackward(dgate: dGate.pointer, dup: dUp.pointer, doutput: dActivated.pointer, gate: tape.gate.pointer, up: tape.up.pointer, count: dGate.count)
        let dPostNormed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        backward(layer.gateProjection, gradients?.gateProjection, dinput: dPostNormed, doutput: dGate, input: tape.postNormed)
        backward(layer.upProjection, gradients?.upProjection, dinput: dPostNormed, doutput: dUp, input: tape.postNormed)
        let dAfterAttention = doutput.copy()  // (tokens, hidden): the residual passes straight through
        rmsNormBackward(
            dinput: dAfterAttention.pointer, dweight: gradients?.postAttentionNorm.pointer, doutput: dPostNormed.pointer,
            input: tape.afterAttention.pointer, weight: layer.postAttentionNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)

        // Attention branch.
        let dAttended = Tensor(shape: [tokens, queryWidth])  // (tokens, heads·headDim)
        backward(layer.outputProjection, gradients?.outputProjection, dinput: dAttended, doutput: dAfterAttention, input: tape.attended)
        let dQueries = Tensor(shape: [tokens, queryWidth])  // (tokens, heads·headDim)
        let dKeys = Tensor(shape: [tokens, keyValueWidth]), dValues = Tensor(shape: [tokens, keyValueWidth])  // (tokens, kvHeads·headDim)
        multiHeadAttentionBackward(
            dqueries: dQueries.pointer, dkeys: dKeys.pointer, dvalues: dValues.pointer, doutput: dAttended.pointer,
            queries: tape.queries.pointer, keys: tape.keys.pointer, values: tape.values.pointer, output: tape.attended.pointer,
            queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim
        ) { $0 + 1 }
        rotary.apply(dQueries.pointer, tokens: tokens, heads: heads, positionAxes: tape.positions.axes, inverse: true)
        rotary.apply(dKeys.pointer, tokens: tokens, heads: keyValueHeads, positionAxes: tape.positions.axes, inverse: true)
        let dInputNormed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        backward(layer.queryProjection, gradients?.queryProjection, dinput: dInputNormed, doutput: dQueries, input: tape.inputNormed)
        backward(layer.keyProjection, gradients?.keyProjection, dinput: dInputNormed, doutput: dKeys, input: tape.inputNormed)
        backward(layer.valueProjection, gradients?.valueProjection, dinput: dInputNormed, doutput: dValues, input: tape.inputNormed)
        let dInput = dAfterAttention.copy()  // (tokens, hidden)
        rmsNormBackward(
            dinput: dInput.pointer, dweight: gradients?.inputNorm.pointer, doutput: dInputNormed.pointer,
            input: tape.input.pointer, weight: layer.inputNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        withExtendedLifetime((dActivated, dGate, dUp, dPostNormed, dAttended, dQueries, dKeys, dValues, dInputNormed)) {}
        return dInput
    }
}

/// Backward of `linear` on input(rows, in): dinput(rows, in) += doutput(rows, out)·W, and W's
/// and the bias's gradients into `gradient` when it is given (a trainable layer).
func backward(_ linear: Linear, _ gradient: Linear?, dinput: Tensor?, doutput: Tensor, input: Tensor) {
    let rows = doutput.count / linear.outFeatures
    withExtendedLifetime((dinput, doutput, input)) {
        linearBackward(
            dinput: dinput?.pointer, dweight: gradient?.weight.floats, dbias: gradient?.bias?.pointer,
            doutput: doutput.pointer, input: input.pointer, weight: linear.weight.floats,
            rows: rows, inFeatures: linear.inFeatures, outFeatures: linear.outFeatures)
    }
}

/// result(sourceRows, columns): rows `indices` of gradient(indices.count, columns) scattered
/// back to where they came from, zeros for the dropped rows (the backward of `gatherRows`).
func scatterRows(_ gradient: Tensor, _ indices: [Int], sourceRows: Int) -> Tensor {
    let columns = gradient.size(1)
    let result = Tensor(shape: [sourceRows, columns])  // (sourceRows, columns)
    for (row, index) in indices.enumerated() {
        (result.pointer + index * columns).update(from: gradient.pointer + row * columns, count: columns)
    }
    return result
}
