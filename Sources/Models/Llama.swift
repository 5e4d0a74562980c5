import Foundation
import SafeTensors
import TensorCore

// MARK: - Weight names

/// Where a checkpoint keeps the language model's tensors.
public struct LanguageModelLayout: Equatable, Sendable {
    /// Prefix of embed_tokens, layers.N and norm.
    public let modelPrefix: String
    /// Prefix of lm_head.weight.
    public let lmHeadPrefix: String

    /// `LlamaForCausalLM`.
    public static let llama = LanguageModelLayout(modelPrefix: "model.", lmHeadPrefix: "lm_head.")
    /// llava-hf's hub files, and what transformers 5's `save_pretrained` writes for LLaVA.
    public static let llavaHub = LanguageModelLayout(modelPrefix: "language_model.model.", lmHeadPrefix: "language_model.lm_head.")
    /// transformers 4.5x's `save_pretrained` of LLaVA.
    public static let llavaNested = LanguageModelLayout(modelPrefix: "model.language_model.", lmHeadPrefix: "lm_head.")

    /// The layout whose embedding table the checkpoint holds.
    public static func detect(in checkpoint: Checkpoint) -> LanguageModelLayout? {
        [llavaHub, llavaNested, llama].first { checkpoint.contains($0.modelPrefix + "embed_tokens.weight") }
    }
}

// MARK: - Model

/// One LLaMA decoder layer's weights.
public struct LlamaDecoderLayer {
    public let inputNorm: Tensor  // (hidden,)
    public let queryProjection: Linear  // (heads·headDim, hidden)
    public let keyProjection: Linear  // (kvHeads·headDim, hidden)
    public let valueProjection: Linear  // (kvHeads·headDim, hidden)
    public let outputProjection: Linear  // (hidden, heads·headDim)
    public let postAttentionNorm: Tensor  // (hidden,)
    public let gateProjection: Linear  // (intermediate, hidden)
    public let upProjection: Linear  // (intermediate, hidden)
    public let downProjection: Linear  // (hidden, intermediate)
}

/// What a decoder layer's forward computed on the way (llm.c style: what its backward needs).
public struct DecoderLayerActivations {
    public let input: Tensor  // (tokens, hidden): the residual stream entering the layer
    public let inputNormed: Tensor  // (tokens, hidden)
    public let queries: Tensor  // (tokens, heads·headDim), after RoPE
    public let keys: Tensor  // (tokens, kvHeads·headDim), after RoPE
    public let values: Tensor  // (tokens, kvHeads·headDim)
    public let attended: Tensor  // (tokens, heads·headDim): attention output before o_proj
    public let afterAttention: Tensor  // (tokens, hidden): input + o_proj(attended)
    public let postNormed: Tensor  // (tokens, hidden)
    public let gate: Tensor  // (tokens, intermediate): gate_proj output, before SiLU
    public let up: Tensor  // (tokens, intermediate)
    public let activated: Tensor  // (tokens, intermediate): silu(gate)·up
    public let positions: [Int]  // (tokens,) rotary positions
}

/// Errors of running the decoder on bad input (token ids, lengths).
public enum DecoderInputError: Error, Equatable, CustomStringConvertible {
    case tokenOutOfRange(position: Int, token: Int, vocabularySize: Int)
    case emptyInput

    public var description: String {
        switch self {
        case let .tokenOutOfRange(position, token, vocabularySize):
            return "token id \(token) at position \(position) is outside the vocabulary (0..<\(vocabularySize))"
        case .emptyInput: return "no input tokens"
        }
    }
}

/// LLaMA as transformers' `LlamaModel` + `lm_head`: embedding, RMSNorm, rotary grouped-query
/// causal attention, SwiGLU MLP, final norm, tied or separate output head.
public final class LlamaModel {
    public let configuration: LlamaConfiguration
    public let embedTokens: WeightMatrix  // (vocab, hidden)
    public let layers: [LlamaDecoderLayer]
    public let finalNorm: Tensor  // (hidden,)
    /// (vocab, hidden); the embedding table itself when the embeddings are tied.
    public let lmHead: WeightMatrix
    public let rotary: RotaryEmbedding

    public var hiddenSize: Int { configuration.hiddenSize }
    public var vocabularySize: Int { configuration.vocabSize }
    public var keyValueWidth: Int { configuration.numKeyValueHeads * configuration.headDim }

    /// Loads the language model's tensors from `loader` under `layout`; with a checkpoint, call
    /// `WeightLoader.finish` afterwards to report what did not match.
    public init(configuration: LlamaConfiguration, loader: WeightSource, layout: LanguageModelLayout) {
        let c = configuration
        let hidden = c.hiddenSize, headDim = c.headDim
        let queryWidth = c.numAttentionHeads * headDim, keyValueWidth = c.numKeyValueHeads * headDim
        self.configuration = c
        let prefix = layout.modelPrefix
        embedTokens = loader.takeMatrix(prefix + "embed_tokens.weight", rows: c.vocabSize, columns: hidden)
        layers = (0..<c.numHiddenLayers).map { index in
            let p = "\(prefix)layers.\(index)."
            return LlamaDecoderLayer(
                inputNorm: loader.take(p + "input_layernorm.weight", shape: [hidden]),
                queryProjection: Linear(loader, p + "self_attn.q_proj", inFeatures: hidden, outFeatures: queryWidth, bias: c.attentionBias),
                keyProjection: Linear(loader, p + "self_attn.k_proj", inFeatures: hidden, outFeatures: keyValueWidth, bias: c.attentionBias),
                valueProjection: Linear(loader, p + "self_attn.v_proj", inFeatures: hidden, outFeatures: keyValueWidth, bias: c.attentionBias),
                outputProjection: Linear(loader, p + "self_attn.o_proj", inFeatures: queryWidth, outFeatures: hidden, bias: c.attentionBias),
                postAttentionNorm: loader.take(p + "post_attention_layernorm.weight", shape: [hidden]),
                gateProjection: Linear(loader, p + "mlp.gate_proj", inFeatures: hidden, outFeatures: c.intermediateSize, bias: c.mlpBias),
                upProjection: Linear(loader, p + "mlp.up_proj", inFeatures: hidden, outFeatures: c.intermediateSize, bias: c.mlpBias),
                downProjection: Linear(loader, p + "mlp.down_proj", inFeatures: c.intermediateSize, outFeatures: hidden, bias: c.mlpBias))
        }
        finalNorm = loader.take(prefix + "norm.weight", shape: [hidden])
        let headName = layout.lmHeadPrefix + "weight"
        // transformers ties only when asked; a checkpoint saved tied may also omit lm_head.
        if c.tieWordEmbeddings && !loader.contains(headName) {
            lmHead = embedTokens
        } else {
            lmHead = loader.takeMatrix(headName, rows: c.vocabSize, columns: hidden)
        }
        rotary = RotaryEmbedding(headDim: headDim, theta: c.ropeTheta)
    }

    /// A fresh cache sized for `capacity` tokens per layer (it grows if needed).
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layerCount: layers.count, rowWidth: keyValueWidth, capacity: capacity)
    }

    /// Rows of the embedding table: (tokens.count, hidden).
    public func embed(_ tokens: [Int]) throws -> Tensor {
        if tokens.isEmpty { throw DecoderInputError.emptyInput }
        let output = Tensor(shape: [tokens.count, hiddenSize])
        for (position, token) in tokens.enumerated() {
            guard token >= 0 && token < vocabularySize else {
                throw DecoderInputError.tokenOutOfRange(position: position, token: token, vocabularySize: vocabularySize)
            }
            embedTokens.copyRow(token, to: output.pointer + position * hiddenSize)
        }
        return output
    }

    /// Runs decoder layer `index` in place on hidden(tokens, hidden), appending the tokens' keys
    /// and values to `cache` (which already holds the earlier tokens this layer has seen).
    /// `positions(tokens)` are the rotary positions; the causal mask follows cache order.
    public func runLayer(_ index: Int, hidden: Tensor, positions: [Int], cache: LayerKVCache) {
        let output = forwardKeepingActivations(layer: index, input: hidden, positions: positions, cache: cache).output
        hidden.pointer.update(from: output.pointer, count: hidden.count)
    }

    /// Decoder layer `index` on input(tokens, hidden): the output (tokens, hidden) and what the
    /// backward needs. With a `cache` the tokens' keys and values are appended to it and the
    /// tokens attend to everything it holds (prefill, decode); without one they attend causally
    /// to each other only (a training sample).
    public func forwardKeepingActivations(
        layer index: Int, input: Tensor, positions: [Int], cache: LayerKVCache? = nil
    ) -> (output: Tensor, activations: DecoderLayerActivations) {
        let layer = layers[index]
        let c = configuration
        let tokens = input.size(0), width = hiddenSize
        let headDim = c.headDim, heads = c.numAttentionHeads, keyValueHeads = c.numKeyValueHeads

        let inputNormed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        rmsNormForward(inputNormed.pointer, input.pointer, layer.inputNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        let queries = layer.queryProjection(inputNormed)  // (tokens, heads·headDim)
        let keys = layer.keyProjection(inputNormed)  // (tokens, kvHeads·headDim)
        let values = layer.valueProjection(inputNormed)  // (tokens, kvHeads·headDim)
        rotary.apply(queries.pointer, tokens: tokens, heads: heads, positions: positions)
        rotary.apply(keys.pointer, tokens: tokens, heads: keyValueHeads, positions: positions)
        let attended = Tensor(shape: [tokens, heads * headDim])  // (tokens, heads·headDim)
        if let cache {
            let pastLength = cache.length
            cache.append(keys: keys.pointer, values: values.pointer, count: tokens)
            causalAttention(
                attended.pointer, queries: queries.pointer, cache: cache, pastLength: pastLength, tokens: tokens,
                heads: heads, keyValueHeads: keyValueHeads, headDim: headDim)
        } else {
            multiHeadAttention(
                attended.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer,
                queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim
            ) { $0 + 1 }
        }
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
        let activations = DecoderLayerActivations(
            input: input, inputNormed: inputNormed, queries: queries, keys: keys, values: values, attended: attended,
            afterAttention: afterAttention, postNormed: postNormed, gate: gate, up: up, activated: activated, positions: positions)
        return (output, activations)
    }

    /// All layers over hidden(tokens, hidden) in place. `observe(name, layer, tensor)` sees each
    /// layer's output as "layer_output" (llama.cpp-style named intermediates for debugging).
    public func runLayers(
        hidden: Tensor, positions: [Int], cache: KVCache,
        observe: ((String, Int, Tensor) -> Void)? = nil
    ) {
        for index in layers.indices {
            runLayer(index, hidden: hidden, positions: positions, cache: cache.layers[index])
            observe?("layer_output", index, hidden)
        }
    }

    /// finalNorm(hidden rows `rows`) as a new (rows.count, hidden) tensor.
    public func finalNormed(_ hidden: Tensor, rows: Range<Int>) -> Tensor {
        let selected = hidden.copyRows(rows)
        rmsNormForward(selected.pointer, selected.pointer, finalNorm.pointer, rows: rows.count, dim: hiddenSize, epsilon: configuration.rmsNormEps)
        return selected
    }

    /// Logits (rows.count, vocab) of hidden rows `rows` (final norm, then lm_head).
    public func logits(_ hidden: Tensor, rows: Range<Int>) -> Tensor {
        let normed = finalNormed(hidden, rows: rows)
        let output = Tensor(shape: [rows.count, vocabularySize])
        lmHead.multiply(output.pointer, normed.pointer, inputRows: rows.count)
        withExtendedLifetime(normed) {}
        return output
    }
}

/// Causal attention of queries(tokens, heads·headDim) over the first `pastLength + tokens` rows
/// of `cache`: query row i sees keys 0...pastLength+i. output is (tokens, heads·headDim).
public func causalAttention(
    _ output: UnsafeMutablePointer<Float>, queries: UnsafePointer<Float>, cache: LayerKVCache,
    pastLength: Int, tokens: Int, heads: Int, keyValueHeads: Int, headDim: Int
) {
    multiHeadAttention(
        output, queries: queries, keys: cache.keys, values: cache.values, queryCount: tokens,
        keyCount: pastLength + tokens, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim
    ) { pastLength + $0 + 1 }
}
