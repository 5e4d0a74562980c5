import Foundation
import SafeTensors
import TensorCore
import TokenReduction

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
    public let positions: Positions  // (axes, tokens) rotary positions
}

/// LLaMA as transformers' `LlamaModel` + `lm_head`: embedding, RMSNorm, rotary grouped-query
/// causal attention, SwiGLU MLP, final norm, tied or separate output head.
public final class LlamaModel: LanguageDecoder {
    public let configuration: LlamaConfiguration
    public let embedTokens: WeightMatrix  // (vocab, hidden)
    public let layers: [LlamaDecoderLayer]
    public let finalNorm: Tensor  // (hidden,)
    /// (vocab, hidden); the embedding table itself when the embeddings are tied.
    public let lmHead: WeightMatrix
    public let rotary: RotaryEmbedding

    public var hiddenSize: Int { configuration.hiddenSize }
    public var keyValueWidth: Int { configuration.numKeyValueHeads * configuration.headDim }
    public var shape: DecoderShape { DecoderShape(configuration) }
    public var contextLength: Int { configuration.maxPositionEmbeddings }
    public var endOfSequenceIds: Set<Int> { Set(configuration.eosTokenIds) }
    public var positionAxes: Int { configuration.mropeSection?.count ?? 1 }

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
                outputProjection: Linear(loader, p + "self_attn.o_proj", inFeatures: queryWidth, outFeatures: hidden, bias: c.attentionOutputBias),
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
        rotary = RotaryEmbedding(headDim: headDim, theta: c.ropeTheta, sections: c.mropeSection)
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
            guard token >= 0 && token < configuration.vocabSize else {
                throw DecoderInputError.tokenOutOfRange(position: position, token: token, vocabularySize: configuration.vocabSize)
            }
            embedTokens.copyRow(token, to: output.pointer + position * hiddenSize)
        }
        return output
    }

    /// The causal mask follows cache order.
    public func runLayer(_ index: Int, hidden: Tensor, positions: Positions, cache: LayerKVCache) {
        let output = forwardKeepingActivations(layer: index, input: hidden, positions: positions, attention: .cache(cache)).output
        hidden.pointer.update(from: output.pointer, count: hidden.count)
    }

    /// Row s of hidden(sequences, hidden) is one new token of sequence s: the projections and the
    /// MLP run on all rows at once (one read of each weight), attention per row over `caches[s]`.
    public func runLayer(_ index: Int, hidden: Tensor, positions: Positions, caches: [LayerKVCache]) {
        let output = forwardKeepingActivations(layer: index, input: hidden, positions: positions, attention: .rowPerCache(caches)).output
        hidden.pointer.update(from: output.pointer, count: hidden.count)
    }

    /// What the tokens of a layer's input attend to.
    public enum AttentionContext {
        /// Causally to each other only (a training sample).
        case causal
        /// To everything `cache` holds and causally to each other; their keys and values are
        /// appended to it (prefill, decode).
        case cache(LayerKVCache)
        /// Row s to everything `caches[s]` holds and to itself; its key and value are appended
        /// there (a decode step of several sequences).
        case rowPerCache([LayerKVCache])
    }

    /// Decoder layer `index` on input(tokens, hidden): the output (tokens, hidden) and what the
    /// backward needs; `attention` says what the tokens attend to.
    public func forwardKeepingActivations(
        layer index: Int, input: Tensor, positions allPositions: Positions, attention context: AttentionContext = .causal
    ) -> (output: Tensor, activations: DecoderLayerActivations) {
        let layer = layers[index]
        let positions = allPositions.axes  // (axes, tokens)
        let c = configuration
        let tokens = input.size(0), width = hiddenSize
        let headDim = c.headDim, heads = c.numAttentionHeads, keyValueHeads = c.numKeyValueHeads

        let inputNormed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        rmsNormForward(inputNormed.pointer, input.pointer, layer.inputNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        let queries = layer.queryProjection(inputNormed)  // (tokens, heads·headDim)
        let keys = layer.keyProjection(inputNormed)  // (tokens, kvHeads·headDim)
        let values = layer.valueProjection(inputNormed)  // (tokens, kvHeads·headDim)
        rotary.apply(queries.pointer, tokens: tokens, heads: heads, positionAxes: positions)
        rotary.apply(keys.pointer, tokens: tokens, heads: keyValueHeads, positionAxes: positions)
        let attended = Tensor(shape: [tokens, heads * headDim])  // (tokens, heads·headDim)
        switch context {
        case .causal:
            multiHeadAttention(
                attended.pointer, queries: queries.pointer, keys: keys.pointer, values: values.pointer,
                queryCount: tokens, keyCount: tokens, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim
            ) { $0 + 1 }
        case let .cache(cache):
            let pastLength = cache.length
            cache.append(keys: keys.pointer, values: values.pointer, count: tokens)
            causalAttention(
                attended.pointer, queries: queries.pointer, cache: cache, pastLength: pastLength, tokens: tokens,
                heads: heads, keyValueHeads: keyValueHeads, headDim: headDim)
        case let .rowPerCache(caches):
            precondition(caches.count == tokens, "\(caches.count) caches for \(tokens) rows")
            let queryWidth = heads * headDim, keyValueWidth = keyValueHeads * headDim
            for (row, cache) in caches.enumerated() {
                let pastLength = cache.length
                cache.append(keys: keys.pointer + row * keyValueWidth, values: values.pointer + row * keyValueWidth, count: 1)
                causalAttention(
                    attended.pointer + row * queryWidth, queries: queries.pointer + row * queryWidth, cache: cache,
                    pastLength: pastLength, tokens: 1, heads: heads, keyValueHeads: keyValueHeads, headDim: headDim)
            }
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
            afterAttention: afterAttention, postNormed: postNormed, gate: gate, up: up, activated: activated, positions: allPositions)
        return (output, activations)
    }

    /// Attention that each key row receives from `queryRows`, as PyramidDrop ranks: layer
    /// `layer`'s input norm, query and key projections applied to input(tokens, hidden), RoPE at
    /// `positions` (M-RoPE at each token's own triple), softmax over all keys with the causal mask
    /// in fp32, averaged over heads and query rows. Only the query rows are projected and scored:
    /// no (tokens × tokens) matrix.
    public func queryAttention(layer index: Int, input: Tensor, positions: Positions, queryRows: [Int]) -> [Float] {
        let weights = layers[index]
        let c = configuration
        let tokens = input.size(0), width = hiddenSize, heads = c.numAttentionHeads, headDim = c.headDim
        let groupSize = heads / c.numKeyValueHeads
        let normed = Tensor(shape: [tokens, width])  // (tokens, hidden)
        rmsNormForward(normed.pointer, input.pointer, weights.inputNorm.pointer, rows: tokens, dim: width, epsilon: c.rmsNormEps)
        let keys = weights.keyProjection(normed)  // (tokens, kvHeads·headDim)
        rotary.apply(keys.pointer, tokens: tokens, heads: c.numKeyValueHeads, positionAxes: positions.axes)
        let queries = weights.queryProjection(gatherRows(normed, queryRows))  // (rows, heads·headDim)
        rotary.apply(queries.pointer, tokens: queryRows.count, heads: heads, positionAxes: positions.gathering(queryRows).axes)

        let rowScores = Tensor(shape: [queryRows.count, tokens])  // (rows, tokens) for one head
        var total = [Float](repeating: 0, count: tokens)  // (tokens,)
        let weight = 1 / Float(heads * queryRows.count)
        for head in 0..<heads {
            BLAS.gemm(
                transposeA: false, transposeB: true, m: queryRows.count, n: tokens, k: headDim, alpha: 1 / Float(headDim).squareRoot(),
                a: queries.pointer + head * headDim, lda: heads * headDim,
                b: keys.pointer + (head / groupSize) * headDim, ldb: c.numKeyValueHeads * headDim,
                beta: 0, c: rowScores.pointer, ldc: tokens)
            softmaxRowsForward(rowScores.pointer, rows: queryRows.count, columns: tokens) { queryRows[$0] + 1 }
            for row in 0..<queryRows.count {
                let probabilities = rowScores.pointer + row * tokens
                for key in 0..<tokens { total[key] += probabilities[key] * weight }
            }
        }
        withExtendedLifetime((normed, keys, queries, rowScores)) {}
        return total
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
        let output = Tensor(shape: [rows.count, configuration.vocabSize])  // (rows, vocab)
        normed.withPointer { lmHead.multiply(output.pointer, $0, inputRows: rows.count) }
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

extension LlamaModel {
    /// LLaMA (`LlamaForCausalLM`) in the registry: a text-only decoder.
    public static let family = textFamily(name: "LLaMA", modelTypes: ["llama"], architectures: ["LlamaForCausalLM"]) { data, file in
        try decodeConfiguration(LlamaConfiguration.self, from: data, file: file)
    }

    /// A family of text-only checkpoints whose decoder is this one (LLaMA, Qwen2), with its
    /// config.json read by `parse`.
    static func textFamily(
        name: String, modelTypes: [String], architectures: [String],
        parse: @escaping @Sendable (Data, String) throws -> LlamaConfiguration
    ) -> ModelFamily {
        ModelFamily(
            name: name, modelTypes: modelTypes, architectures: architectures,
            parse: { data, file in
                let configuration = try parse(data, file)
                try configuration.validate(file: file)
                return .llama(configuration)
            },
            build: { configuration, checkpoint, source in
                guard case let .llama(text) = configuration else { throw FamilyMismatchError(family: name) }
                let layout = LanguageModelLayout.llama
                try text.checkSizes(against: checkpoint, layout: layout)
                return BuiltModel(
                    decoder: LlamaModel(configuration: text, loader: source, layout: layout), visionLanguageModel: nil,
                    ownedPrefixes: [layout.modelPrefix, layout.lmHeadPrefix], languageLayout: layout)
            })
    }
}

extension LlamaConfiguration {
    /// Checks the sizes the weights fix against `checkpoint`'s header before anything is built;
    /// `keyPrefix` is "text_config." inside a LLaVA config.
    func checkSizes(against checkpoint: Checkpoint?, layout: LanguageModelLayout, keyPrefix: String = "") throws {
        let p = layout.modelPrefix
        try checkConfigurationSizes(
            checkpoint, keyPrefix: keyPrefix,
            [ConfigurationSize(key: "vocab_size", value: vocabSize, tensor: p + "embed_tokens.weight", axis: 0),
             ConfigurationSize(key: "hidden_size", value: hiddenSize, tensor: p + "embed_tokens.weight", axis: 1),
             ConfigurationSize(key: "intermediate_size", value: intermediateSize, tensor: p + "layers.0.mlp.gate_proj.weight", axis: 0)],
            layers: ("num_hidden_layers", numHiddenLayers, { "\(p)layers.\($0).input_layernorm.weight" }))
    }
}

extension DecoderShape {
    /// The sizes of a LLaMA decoder.
    public init(_ configuration: LlamaConfiguration) {
        self.init(
            layers: configuration.numHiddenLayers, hidden: configuration.hiddenSize, intermediate: configuration.intermediateSize,
            heads: configuration.numAttentionHeads, keyValueHeads: configuration.numKeyValueHeads, headDim: configuration.headDim,
            vocabulary: configuration.vocabSize)
    }
}
