import Foundation
import Models
import TensorCore

// MARK: - Vision: CLIP encoder layers and the embeddings, forward keeping what backward needs

extension CLIPVisionTower {
    /// Backward from the gradients of the selected hidden states (one per feature index, each
    /// (patches + 1, hidden)) to every weight of the tower used, accumulated into `gradients`.
    func trainingBackward(tape: CLIPTowerActivations, dstates: [Tensor], gradients: CLIPVisionTower) {
        let c = configuration
        let hidden = c.hiddenSize, patchWidth = c.numChannels * c.patchSize * c.patchSize, tokens = patchCount + 1
        func gradient(ofIndex index: Int) -> Tensor? {
            var total: Tensor?
            for (position, featureIndex) in tape.featureIndices.enumerated() where featureIndex == index {
                if let existing = total { addInPlace(existing.pointer, dstates[position].pointer, count: existing.count) } else { total = dstates[position].copy() }
            }
            return total
        }
        var dState = gradient(ofIndex: tape.layers.count) ?? Tensor(shape: [tokens, hidden])  // (patches + 1, hidden)
        for index in stride(from: tape.layers.count - 1, through: 0, by: -1) {
            dState = trainingBackward(layer: index, tape: tape.layers[index], doutput: dState, gradients: gradients.layers[index])
            if let extra = gradient(ofIndex: index) { addInPlace(dState.pointer, extra.pointer, count: dState.count) }
        }
        let dEmbeddings = Tensor(shape: [tokens, hidden])  // (patches + 1, hidden)
        layerNormBackward(
            dinput: dEmbeddings.pointer, dweight: gradients.preLayerNormWeight.pointer, dbias: gradients.preLayerNormBias.pointer,
            doutput: dState.pointer, input: tape.embedding.embeddings.pointer, weight: preLayerNormWeight.pointer,
            rows: tokens, dim: hidden, epsilon: c.layerNormEps)
        addInPlace(gradients.positionEmbedding.pointer, dEmbeddings.pointer, count: dEmbeddings.count)
        addInPlace(gradients.classEmbedding.pointer, dEmbeddings.pointer, count: hidden)
        // The patch convolution (no bias): dW(hidden, channels·patch·patch) += dEmbeddings[1...]ᵀ · patches.
        BLAS.gemm(
            transposeA: true, transposeB: false, m: hidden, n: patchWidth, k: patchCount, alpha: 1,
            a: dEmbeddings.pointer + hidden, lda: hidden, b: tape.embedding.patches.pointer, ldb: patchWidth,
            beta: 1, c: gradients.patchEmbedding.pointer, ldc: patchWidth)
        withExtendedLifetime((dEmbeddings, dState)) {}
    }

    func trainingBackward(layer index: Int, tape: CLIPLayerActivations, doutput: Tensor, gradients: CLIPEncoderLayer) -> Tensor {
        let layer = layers[index]
        let c = configuration
        let tokens = doutput.size(0), hidden = c.hiddenSize, heads = c.numAttentionHeads
        let dActivated = Tensor(shape: tape.activated.shape)  // (tokens, intermediate)
        backward(layer.fc2, gradients.fc2, dinput: dActivated, doutput: doutput, input: tape.activated)
        let dPreActivation = Tensor(shape: tape.activated.shape)  // (tokens, intermediate)
        c.hiddenAct.backward(dPreActivation.pointer, doutput: dActivated.pointer, input: tape.preActivation.pointer, count: dActivated.count)
        let dNormed2 = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        backward(layer.fc1, gradients.fc1, dinput: dNormed2, doutput: dPreActivation, input: tape.normed2)
        let dAfterAttention = doutput.copy()  // (tokens, hidden)
        layerNormBackward(
            dinput: dAfterAttention.pointer, dweight: gradients.layerNorm2Weight.pointer, dbias: gradients.layerNorm2Bias.pointer,
            doutput: dNormed2.pointer, input: tape.afterAttention.pointer, weight: layer.layerNorm2Weight.pointer,
            rows: tokens, dim: hidden, epsilon: c.layerNormEps)
        let dAttended = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        backward(layer.outputProjection, gradients.outputProjection, dinput: dAttended, doutput: dAfterAttention, input: tape.attended)
        let dQueries = Tensor(shape: [tokens, hidden]), dKeys = Tensor(shape: [tokens, hidden]), dValues = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        multiHeadAttentionBackward(
            dqueries: dQueries.pointer, dkeys: dKeys.pointer, dvalues: dValues.pointer, doutput: dAttended.pointer,
            queries: tape.queries.pointer, keys: tape.keys.pointer, values: tape.values.pointer, output: tape.attended.pointer,
            queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: heads, headDim: hidden / heads
        ) { _ in tokens }
        let dNormed1 = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        backward(layer.queryProjection, gradients.queryProjection, dinput: dNormed1, doutput: dQueries, input: tape.normed1)
        backward(layer.keyProjection, gradients.keyProjection, dinput: dNormed1, doutput: dKeys, input: tape.normed1)
        backward(layer.valueProjection, gradients.valueProjection, dinput: dNormed1, doutput: dValues, input: tape.normed1)
        let dInput = dAfterAttention.copy()  // (tokens, hidden)
        layerNormBackward(
            dinput: dInput.pointer, dweight: gradients.layerNorm1Weight.pointer, dbias: gradients.layerNorm1Bias.pointer,
            doutput: dNormed1.pointer, input: tape.input.pointer, weight: layer.layerNorm1Weight.pointer,
            rows: tokens, dim: hidden, epsilon: c.layerNormEps)
        withExtendedLifetime((dActivated, dPreActivation, dNormed2, dAttended, dQueries, dKeys, dValues, dNormed1)) {}
        return dInput
    }
}

// MARK: - Projector

extension MultiModalProjector {
    /// dfeatures(tokens, visionFeatures) when `needsInputGradient`, else nil; weight gradients into `gradients` if given.
    func trainingBackward(tape: ProjectorActivations, doutput: Tensor, gradients: MultiModalProjector?, needsInputGradient: Bool) -> Tensor? {
        let dActivated = Tensor(shape: tape.activated.shape)  // (tokens, textHidden)
        backward(linear2, gradients?.linear2, dinput: dActivated, doutput: doutput, input: tape.activated)
        let dPreActivation = Tensor(shape: tape.activated.shape)  // (tokens, textHidden)
        activation.backward(dPreActivation.pointer, doutput: dActivated.pointer, input: tape.preActivation.pointer, count: dActivated.count)
        let dInput = needsInputGradient ? Tensor(shape: tape.input.shape) : nil  // (tokens, visionFeatures)
        backward(linear1, gradients?.linear1, dinput: dInput, doutput: dPreActivation, input: tape.input)
        withExtendedLifetime((dActivated, dPreActivation)) {}
        return dInput
    }
}
