import Foundation
import Models
import TensorCore

// MARK: - Vision: CLIP encoder layers and the embeddings, forward keeping what backward needs

/// What a CLIP encoder layer's forward keeps for its backward.
struct VisionLayerTape {
    let input: Tensor  // (tokens, hidden)
    let normed1: Tensor  // (tokens, hidden)
    let queries: Tensor, keys: Tensor, values: Tensor  // (tokens, hidden)
    let attended: Tensor  // (tokens, hidden)
    let afterAttention: Tensor  // (tokens, hidden)
    let normed2: Tensor  // (tokens, hidden)
    let preActivation: Tensor  // (tokens, intermediate): fc1 output
    let activated: Tensor  // (tokens, intermediate)
}

/// What the vision tower's forward keeps: the unfolded patches, the embeddings before
/// `pre_layrnorm`, and each layer run.
struct VisionTape {
    let patches: Tensor  // (patches, channels·patch·patch)
    let embeddings: Tensor  // (patches + 1, hidden): class token + patch embeddings + positions, before pre_layrnorm
    var layers: [VisionLayerTape]
    /// hidden_states[i] for the selected feature layers, resolved to 0...layerCount.
    let featureIndices: [Int]
}

extension CLIPVisionTower {
    /// hidden_states of transformers (only up to the deepest of `featureIndices`, resolved), with the tape.
    func trainingForward(pixelValues: Tensor, featureIndices: [Int]) -> (states: [Tensor], tape: VisionTape) {
        let c = configuration
        let hidden = c.hiddenSize, patchWidth = c.numChannels * c.patchSize * c.patchSize
        let patches = unfoldPatches(pixelValues: pixelValues)  // (patches, channels·patch·patch)
        let embeddings = Tensor(shape: [patchCount + 1, hidden])  // (patches + 1, hidden)
        embeddings.pointer.update(from: classEmbedding.pointer, count: hidden)
        BLAS.matmulTransposedB(embeddings.pointer + hidden, patches.pointer, patchEmbedding.pointer, m: patchCount, n: hidden, k: patchWidth)
        addInPlace(embeddings.pointer, positionEmbedding.pointer, count: embeddings.count)
        var states = Tensor(shape: embeddings.shape)  // (patches + 1, hidden)
        layerNormForward(states.pointer, embeddings.pointer, preLayerNormWeight.pointer, preLayerNormBias.pointer,
                         rows: patchCount + 1, dim: hidden, epsilon: c.layerNormEps)
        var captured: [Int: Tensor] = [0: states]
        var tapes: [VisionLayerTape] = []
        for index in 0..<(featureIndices.max() ?? 0) {
            let (output, tape) = trainingForward(layer: index, input: states)
            tapes.append(tape)
            states = output
            captured[index + 1] = states
        }
        let tape = VisionTape(patches: patches, embeddings: embeddings, layers: tapes, featureIndices: featureIndices)
        return (featureIndices.map { captured[$0]! }, tape)
    }

    func trainingForward(layer index: Int, input: Tensor) -> (output: Tensor, tape: VisionLayerTape) {
        let layer = layers[index]
        let c = configuration
        let tokens = input.size(0), hidden = c.hiddenSize, heads = c.numAttentionHeads
        let normed1 = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        layerNormForward(normed1.pointer, input.pointer, layer.layerNorm1Weight.pointer, layer.layerNorm1Bias.pointer,
                         rows: tokens, dim: hidden, epsilon: c.layerNormEps)
        let queries = layer.queryProjection(normed1), keys = layer.keyProjection(normed1), values = layer.valueProjection(normed1)  // (tokens, hidden)
        let attended = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        multiHeadAttention(
            attended.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer,
            queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: heads, headDim: hidden / heads
        ) { _ in tokens }
        let afterAttention = layer.outputProjection(attended)  // (tokens, hidden)
        addInPlace(afterAttention.pointer, input.pointer, count: afterAttention.count)
        let normed2 = Tensor(shape: [tokens, hidden])  // (tokens, hidden)
        layerNormForward(normed2.pointer, afterAttention.pointer, layer.layerNorm2Weight.pointer, layer.layerNorm2Bias.pointer,
                         rows: tokens, dim: hidden, epsilon: c.layerNormEps)
        let preActivation = layer.fc1(normed2)  // (tokens, intermediate)
        let activated = preActivation.copy()  // (tokens, intermediate)
        if c.hiddenAct == "gelu" {
            geluForward(activated.pointer, count: activated.count)
        } else {
            quickGeluForward(activated.pointer, count: activated.count)
        }
        let output = layer.fc2(activated)  // (tokens, hidden)
        addInPlace(output.pointer, afterAttention.pointer, count: output.count)
        let tape = VisionLayerTape(
            input: input, normed1: normed1, queries: queries, keys: keys, values: values, attended: attended,
            afterAttention: afterAttention, normed2: normed2, preActivation: preActivation, activated: activated)
        return (output, tape)
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
            doutput: dState.pointer, input: tape.embeddings.pointer, weight: preLayerNormWeight.pointer,
            rows: tokens, dim: hidden, epsilon: c.layerNormEps)
        addInPlace(gradients.positionEmbedding.pointer, dEmbeddings.pointer, count: dEmbeddings.count)
        addInPlace(gradients.classEmbedding.pointer, dEmbeddings.pointer, count: hidden)
        // The patch convolution (no bias): dW(hidden, channels·patch·patch) += dEmbeddings[1...]ᵀ · patches.
        BLAS.gemm(
            transposeA: true, transposeB: false, m: hidden, n: patchWidth, k: patchCount, alpha: 1,
            a: dEmbeddings.pointer + hidden, lda: hidden, b: tape.patches.pointer, ldb: patchWidth,
            beta: 1, c: gradients.patchEmbedding.pointer, ldc: patchWidth)
        withExtendedLifetime((dEmbeddings, dState)) {}
    }

    func trainingBackward(layer index: Int, tape: VisionLayerTape, doutput: Tensor, gradients: CLIPEncoderLayer) -> Tensor {
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
