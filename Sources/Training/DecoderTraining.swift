import Foundation
import Models
import TensorCore

// MARK: - Language: one LLaMA decoder layer, forward keeping what backward needs, and backward

/// What a decoder layer's forward keeps for its backward, for one sample of `tokens` rows.
struct DecoderLayerTape {
    let input: Tensor  // (tokens, hidden): the residual stream entering the layer
    let inputNormed: Tensor  // (tokens, hidden)
    let queries: Tensor  // (tokens, heads·headDim), after RoPE
    let keys: Tensor  // (tokens, kvHeads·headDim), after RoPE
    let values: Tensor  // (tokens, kvHeads·headDim)
    let attended: Tensor  // (tokens, heads·headDim): attention output before o_proj
    let afterAttention: Tensor  // (tokens, hidden): input + o_proj(attended)
    let postNormed: Tensor  // (tokens, hidden)
    let gate: Tensor  // (tokens, intermediate): gate_proj output, before SiLU
    let up: Tensor  // (tokens, intermediate)
    let activated: Tensor  // (tokens, intermediate): silu(gate)·up
    let positions: [Int]  // (tokens,) rotary positions
}

extension LlamaModel {
    /// Decoder layer `index` on input(tokens, hidden) with causal attention over the sample's own
    /// rows; returns the output (tokens, hidden) and the tape. Same arithmetic as `runLayer`.
    func trainingForward(layer index: Int, input: Tensor, positions: [Int]) -> (output: Tensor, tape: DecoderLayerTape) {
        let layer = layers[index]
        let c = configuration
        let tokens = input.size(0), width = hiddenSize
        let heads = c.numAttentionHeads, keyValueHeads = c.numKeyValueHeads, headDim = c.headDim

        let inputNormed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        rmsNormForward(inputNormed.pointer, input.pointer, layer.inputNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        let queries = layer.queryProjection(inputNormed)  // (tokens, heads·headDim)
        let keys = layer.keyProjection(inputNormed)  // (tokens, kvHeads·headDim)
        let values = layer.valueProjection(inputNormed)  // (tokens, kvHeads·headDim)
        rotary.apply(queries.pointer, tokens: tokens, heads: heads, positions: positions)
        rotary.apply(keys.pointer, tokens: tokens, heads: keyValueHeads, positions: positions)
        let attended = Tensor(shape: [tokens, heads * headDim])  // (tokens, heads·headDim)
        multiHeadAttention(
            attended.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer,
            queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim
        ) { $0 + 1 }
        let afterAttention = layer.outputProjection(attended)  // (tokens, hidden)
        addInPlace(afterAttention.pointer, input.pointer, count: afterAttention.count)

        let postNormed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        rmsNormForward(postNormed.pointer, afterAttention.pointer, layer.postAttentionNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        let gate = layer.gateProjection(postNormed)  // (tokens, intermediate)
        let up = layer.upProjection(postNormed)  // (tokens, intermediate)
        let activated = Tensor(shape: gate.shape)  // (tokens, intermediate)
        swigluForward(activated.pointer, gate: gate.pointer, up: up.pointer, count: gate.count)
        let output = layer.downProjection(activated)  // (tokens, hidden)
        addInPlace(output.pointer, afterAttention.pointer, count: output.count)
        let tape = DecoderLayerTape(
            input: input, inputNormed: inputNormed, queries: queries, keys: keys, values: values, attended: attended,
            afterAttention: afterAttention, postNormed: postNormed, gate: gate, up: up, activated: activated, positions: positions)
        return (output, tape)
    }

    /// Backward of `trainingForward`: from doutput(tokens, hidden) returns dinput(tokens, hidden),
    /// accumulating the layer's weight gradients into `gradients` (nil: frozen, inputs only).
    func trainingBackward(layer index: Int, tape: DecoderLayerTape, doutput: Tensor, gradients: LlamaDecoderLayer?) -> Tensor {
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
        rotary.apply(dQueries.pointer, tokens: tokens, heads: heads, positions: tape.positions, inverse: true)
        rotary.apply(dKeys.pointer, tokens: tokens, heads: keyValueHeads, positions: tape.positions, inverse: true)
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
