import Foundation
import Models
import TensorCore

// MARK: - Vision: CLIP encoder layers and the embeddings, forward keeping what backward needs

/// What the vision tower's forward keeps: the embedding step's and each layer's activations.
struct VisionTape {
    let embedding: CLIPEmbeddingActivations
    var layers: [CLIPLayerActivations]
    /// hidden_states[i] for the selected feature layers, resolved to 0...layerCount.
    let featureIndices: [Int]
}

extension CLIPVisionTower {
    /// hidden_states of transformers (only up to the deepest of `featureIndices`, resolved), with the tape.
    func trainingForward(pixelValues: Tensor, featureIndices: [Int]) -> (states: [Tensor], tape: VisionTape) {
        var (states, embedding) = embedKeepingActivations(pixelValues: pixelValues)
        var captured: [Int: Tensor] = [0: states]
        var layerActivations: [CLIPLayerActivations] = []
        for index in 0..<(featureIndices.max() ?? 0) {
            let (output, activations) = forwardKeepingActivations(layer: index, input: states)
            layerActivations.append(activations)
            states = output
            captured[index + 1] = states
        }
        let tape = VisionTape(embedding: embedding, layers: layerActivations, featureIndices: featureIndices)
        return (featureIndices.map { captured[$0]! }, tape)
    }

    /// Backward from the gradients of the selected hidden states (one per feature index, each
    /// (patches + 1, hidden)) to every weight of the tower used, accumulated into `gradients`.
    func trainingBackward(tape: VisionTape, dstates: [Tensor], gradients: CLIPVisionTower) {
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
        if c.hiddenAct == "gelu" {
            geluBackward(dPreActivation.pointer, doutput: dActivated.pointer, input: tape.preActivation.pointer, count: dActivated.count)
        } else {
            quickGeluBackward(dPreActivation.pointer, doutput: dActivated.pointer, input: tape.preActivation.pointer, count: dActivated.count)
        }
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

/// What the projector's forward keeps.
struct ProjectorTape {
    let input: Tensor  // (tokens, visionFeatures)
    let preActivation: Tensor  // (tokens, textHidden): linear_1 output
    let activated: Tensor  // (tokens, textHidden)
}

extension MultiModalProjector {
    func trainingForward(_ features: Tensor) -> (output: Tensor, tape: ProjectorTape) {
        let preActivation = linear1(features)  // (tokens, textHidden)
        let activated = preActivation.copy()  // (tokens, textHidden)
        if activation == "quick_gelu" {
            quickGeluForward(activated.pointer, count: activated.count)
        } else {
            geluForward(activated.pointer, count: activated.count)
        }
        return (linear2(activated), ProjectorTape(input: features, preActivation: preActivation, activated: activated))
    }

    /// dfeatures(tokens, visionFeatures) when `needsInputGradient`, else nil; weight gradients into `gradients` if given.
    func trainingBackward(tape: ProjectorTape, doutput: Tensor, gradients: MultiModalProjector?, needsInputGradient: Bool) -> Tensor? {
        let dActivated = Tensor(shape: tape.activated.shape)  // (tokens, textHidden)
        backward(linear2, gradients?.linear2, dinput: dActivated, doutput: doutput, input: tape.activated)
        let dPreActivation = Tensor(shape: tape.activated.shape)  // (tokens, textHidden)
        if activation == "quick_gelu" {
            quickGeluBackward(dPreActivation.pointer, doutput: dActivated.pointer, input: tape.preActivation.pointer, count: dActivated.count)
        } else {
            geluBackward(dPreActivation.pointer, doutput: dActivated.pointer, input: tape.preActivation.pointer, count: dActivated.count)
        }
        let dInput = needsInputGradient ? Tensor(shape: tape.input.shape) : nil  // (tokens, visionFeatures)
        backward(linear1, gradients?.linear1, dinput: dInput, doutput: dPreActivation, input: tape.input)
        withExtendedLifetime((dActivated, dPreActivation)) {}
        return dInput
    }
}
