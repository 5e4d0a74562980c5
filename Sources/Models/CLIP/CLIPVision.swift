import Foundation
import TensorCore

// MARK: - Vision

/// One CLIP encoder layer's weights (pre-LN: LayerNorm → attention → residual, LayerNorm → MLP → residual).
public struct CLIPEncoderLayer {
    public let layerNorm1Weight: Tensor, layerNorm1Bias: Tensor  // (hidden,)
    public let queryProjection: Linear, keyProjection: Linear, valueProjection: Linear  // (hidden, hidden)
    public let outputProjection: Linear  // (hidden, hidden)
    public let layerNorm2Weight: Tensor, layerNorm2Bias: Tensor  // (hidden,)
    public let fc1: Linear  // (intermediate, hidden)
    public let fc2: Linear  // (hidden, intermediate)
}

/// What a CLIP encoder layer's forward computed on the way (llm.c style: what its backward needs).
public struct CLIPLayerActivations {
    public let input: Tensor  // (tokens, hidden)
    public let normed1: Tensor  // (tokens, hidden)
    public let queries: Tensor, keys: Tensor, values: Tensor  // (tokens, hidden)
    public let attended: Tensor  // (tokens, hidden)
    public let afterAttention: Tensor  // (tokens, hidden)
    public let normed2: Tensor  // (tokens, hidden)
    public let preActivation: Tensor  // (tokens, intermediate): fc1 output
    public let activated: Tensor  // (tokens, intermediate)
}

/// What the embedding step computed on the way.
public struct CLIPEmbeddingActivations {
    public let patches: Tensor  // (patches, channels·patch·patch)
    public let embeddings: Tensor  // (patches + 1, hidden): class token + patch embeddings + positions, before pre_layrnorm
}

/// CLIP's ViT as transformers' `CLIPVisionTransformer`: patch embedding (a convolution with
/// stride = kernel, done as one matrix product), class token, position embeddings,
/// `pre_layrnorm`, pre-LN encoder layers with non-causal attention and quick_gelu.
public final class CLIPVisionTower {
    public let configuration: CLIPVisionConfiguration
    public let classEmbedding: Tensor  // (hidden,)
    /// (hidden, channels, patch, patch), the convolution kernel, read as (hidden, channels·patch·patch).
    public let patchEmbedding: Tensor
    public let positionEmbedding: Tensor  // (patches + 1, hidden)
    public let preLayerNormWeight: Tensor, preLayerNormBias: Tensor  // (hidden,)
    public let layers: [CLIPEncoderLayer]
    /// Loaded because the checkpoint holds them; LLaVA's features never pass through them.
    public let postLayerNormWeight: Tensor, postLayerNormBias: Tensor  // (hidden,)

    public var patchesPerSide: Int { configuration.imageSize / configuration.patchSize }
    public var patchCount: Int { patchesPerSide * patchesPerSide }

    public init(configuration: CLIPVisionConfiguration, loader: WeightSource, prefix: String) {
        let c = configuration
        let hidden = c.hiddenSize
        let positions = (c.imageSize / c.patchSize) * (c.imageSize / c.patchSize) + 1
        self.configuration = c
        classEmbedding = loader.take(prefix + "embeddings.class_embedding", shape: [hidden])
        // Kept as loaded (not copied), so a trainer's tensors and the tower share it.
        patchEmbedding = loader.take(prefix + "embeddings.patch_embedding.weight", shape: [hidden, c.numChannels, c.patchSize, c.patchSize])
        positionEmbedding = loader.take(prefix + "embeddings.position_embedding.weight", shape: [positions, hidden])
        preLayerNormWeight = loader.take(prefix + "pre_layrnorm.weight", shape: [hidden])
        preLayerNormBias = loader.take(prefix + "pre_layrnorm.bias", shape: [hidden])
        layers = (0..<c.numHiddenLayers).map { index in
            let p = "\(prefix)encoder.layers.\(index)."
            return CLIPEncoderLayer(
                layerNorm1Weight: loader.take(p + "layer_norm1.weight", shape: [hidden]),
                layerNorm1Bias: loader.take(p + "layer_norm1.bias", shape: [hidden]),
                queryProjection: Linear(loader, p + "self_attn.q_proj", inFeatures: hidden, outFeatures: hidden, bias: true),
                keyProjection: Linear(loader, p + "self_attn.k_proj", inFeatures: hidden, outFeatures: hidden, bias: true),
                valueProjection: Linear(loader, p + "self_attn.v_proj", inFeatures: hidden, outFeatures: hidden, bias: true),
                outputProjection: Linear(loader, p + "self_attn.out_proj", inFeatures: hidden, outFeatures: hidden, bias: true),
                layerNorm2Weight: loader.take(p + "layer_norm2.weight", shape: [hidden]),
                layerNorm2Bias: loader.take(p + "layer_norm2.bias", shape: [hidden]),
                fc1: Linear(loader, p + "mlp.fc1", inFeatures: hidden, outFeatures: c.intermediateSize, bias: true),
                fc2: Linear(loader, p + "mlp.fc2", inFeatures: c.intermediateSize, outFeatures: hidden, bias: true))
        }
        postLayerNormWeight = loader.take(prefix + "post_layernorm.weight", shape: [hidden])
        postLayerNormBias = loader.take(prefix + "post_layernorm.bias", shape: [hidden])
    }

    /// The image unfolded into rows of one patch each, in the kernel's (channel, y, x) order:
    /// pixelValues(channels, side, side) → (patches, channels·patch·patch).
    public func unfoldPatches(pixelValues: Tensor) -> Tensor {
        let c = configuration
        let side = c.imageSize, patch = c.patchSize, perSide = patchesPerSide, channels = c.numChannels
        precondition(pixelValues.shape == [channels, side, side], "pixel values \(pixelValues.shape), expected \([channels, side, side])")
        let patchWidth = channels * patch * patch
        let patches = Tensor(shape: [patchCount, patchWidth])  // (patches, channels·patch·patch)
        for patchY in 0..<perSide {
            for patchX in 0..<perSide {
                var destination = patches.pointer + (patchY * perSide + patchX) * patchWidth
                for channel in 0..<channels {
                    for y in 0..<patch {
                        let source = pixelValues.pointer + (channel * side + patchY * patch + y) * side + patchX * patch
                        destination.update(from: source, count: patch)
                        destination += patch
                    }
                }
            }
        }
        return patches
    }

    /// Hidden states (patches + 1, hidden) after `pre_layrnorm`: transformers' hidden_states[0].
    public func embed(pixelValues: Tensor) -> Tensor {
        embedKeepingActivations(pixelValues: pixelValues).states
    }

    /// `embed`, also returning what its backward needs: the unfolded patches and the embeddings
    /// before `pre_layrnorm`.
    public func embedKeepingActivations(pixelValues: Tensor) -> (states: Tensor, activations: CLIPEmbeddingActivations) {
        let c = configuration
        let hidden = c.hiddenSize, patchWidth = c.numChannels * c.patchSize * c.patchSize
        let patches = unfoldPatches(pixelValues: pixelValues)  // (patches, channels·patch·patch)
        let embeddings = Tensor(shape: [patchCount + 1, hidden])  // (patches + 1, hidden); row 0 is the class token
        embeddings.pointer.update(from: classEmbedding.pointer, count: hidden)
        BLAS.matmulTransposedB(embeddings.pointer + hidden, patches.pointer, patchEmbedding.pointer, m: patchCount, n: hidden, k: patchWidth)
        addInPlace(embeddings.pointer, positionEmbedding.pointer, count: embeddings.count)
        let states = Tensor(shape: embeddings.shape)  // (patches + 1, hidden)
        layerNormForward(states.pointer, embeddings.pointer, preLayerNormWeight.pointer, preLayerNormBias.pointer,
                         rows: patchCount + 1, dim: hidden, epsilon: c.layerNormEps)
        return (states, CLIPEmbeddingActivations(patches: patches, embeddings: embeddings))
    }

    /// Encoder layer `index` on input(tokens, hidden): the output (tokens, hidden) and what the
    /// backward needs.
    public func forwardKeepingActivations(layer index: Int, input: Tensor) -> (output: Tensor, activations: CLIPLayerActivations) {
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
        c.hiddenAct.forward(activated.pointer, count: activated.count)
        let output = layer.fc2(activated)  // (tokens, hidden)
        addInPlace(output.pointer, afterAttention.pointer, count: output.count)
        let activations = CLIPLayerActivations(
            input: input, normed1: normed1, queries: queries, keys: keys, values: values, attended: attended,
            afterAttention: afterAttention, normed2: normed2, preActivation: preActivation, activated: activated)
        return (output, activations)
    }

    /// The hidden states transformers returns as hidden_states[i] for each i in `indices`
    /// (0 = embeddings, k = after layer k; negative counts from the end), running only as many
    /// layers as the deepest one needs. `observe(layer, states)` sees every layer's output.
    public func hiddenStates(
        pixelValues: Tensor, indices: [Int], observe: ((Int, Tensor) -> Void)? = nil
    ) -> [Tensor] {
        hiddenStatesKeepingActivations(pixelValues: pixelValues, indices: indices, keepsActivations: false, observe: observe).states
    }

    /// `hiddenStates`, also returning, with `keepsActivations`, what the backward needs.
    public func hiddenStatesKeepingActivations(
        pixelValues: Tensor, indices: [Int], keepsActivations: Bool = true, observe: ((Int, Tensor) -> Void)? = nil
    ) -> (states: [Tensor], activations: CLIPTowerActivations?) {
        let count = layers.count + 1
        let resolved = indices.map { $0 < 0 ? count + $0 : $0 }
        precondition(resolved.allSatisfy { (0..<count).contains($0) }, "vision feature layers \(indices) outside 0..<\(count)")
        var (states, embedding) = embedKeepingActivations(pixelValues: pixelValues)  // (patches + 1, hidden)
        var captured: [Int: Tensor] = [0: states]
        var layerActivations: [CLIPLayerActivations] = []
        for index in 0..<(resolved.max() ?? 0) {
            let (output, activations) = forwardKeepingActivations(layer: index, input: states)
            if keepsActivations { layerActivations.append(activations) }
            observe?(index, output)
            states = output
            captured[index + 1] = states
        }
        let activations = keepsActivations
            ? CLIPTowerActivations(embedding: embedding, layers: layerActivations, featureIndices: resolved) : nil
        return (resolved.map { captured[$0]! }, activations)
    }
}

/// What the tower's forward keeps for its backward: the embedding step's and each layer's activations.
public struct CLIPTowerActivations {
    public let embedding: CLIPEmbeddingActivations
    public let layers: [CLIPLayerActivations]
    /// hidden_states[i] for the selected feature layers, resolved to 0...layerCount.
    public let featureIndices: [Int]
}

// MARK: - Projector

/// What the projector's forward computed on the way (what its backward needs).
public struct ProjectorActivations {
    public let input: Tensor  // (tokens, visionFeatures)
    public let preActivation: Tensor  // (tokens, textHidden): linear_1 output
    public let activated: Tensor  // (tokens, textHidden)
}

/// `LlavaMultiModalProjector`: linear, GELU, linear, from vision features to the language model's width.
public struct MultiModalProjector {
    public let linear1: Linear  // (textHidden, visionFeatures)
    public let linear2: Linear  // (textHidden, textHidden)
    public let activation: Activation

    public init(loader: WeightSource, prefix: String, inFeatures: Int, outFeatures: Int, bias: Bool, activation: Activation) {
        linear1 = Linear(loader, prefix + "linear_1", inFeatures: inFeatures, outFeatures: outFeatures, bias: bias)
        linear2 = Linear(loader, prefix + "linear_2", inFeatures: outFeatures, outFeatures: outFeatures, bias: bias)
        self.activation = activation
    }

    /// features(tokens, visionFeatures) → (tokens, textHidden).
    public func callAsFunction(_ features: Tensor) -> Tensor {
        forwardKeepingActivations(features).output
    }

    /// The forward, returning the output (tokens, textHidden) and what the backward needs.
    public func forwardKeepingActivations(_ features: Tensor) -> (output: Tensor, activations: ProjectorActivations) {
        let preActivation = linear1(features)  // (tokens, textHidden)
        let activated = preActivation.copy()  // (tokens, textHidden)
        activation.forward(activated.pointer, count: activated.count)
        return (linear2(activated), ProjectorActivations(input: features, preActivation: preActivation, activated: activated))
    }
}
