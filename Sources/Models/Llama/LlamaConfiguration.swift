import Foundation
import TensorCore
import TokenReduction

/// `LlamaConfig` of transformers (and `Qwen2Config`, the same decoder with other defaults and
/// biases). Absent keys take transformers' defaults (LLaMA's, or those a decoder's `userInfo`
/// gives under `LlamaConfiguration.defaultsKey`); both the hub's `rope_theta` and current
/// transformers' `rope_parameters` are read.
public struct LlamaConfiguration: Codable, Equatable, Sendable {
    public var vocabSize: Int = 32000
    public var hiddenSize: Int = 4096
    public var intermediateSize: Int = 11008
    public var numHiddenLayers: Int = 32
    public var numAttentionHeads: Int = 32
    public var numKeyValueHeads: Int = 32
    public var headDim: Int = 128
    public var hiddenAct: Activation = .silu
    public var maxPositionEmbeddings: Int = 2048
    public var rmsNormEps: Float = 1e-6
    public var ropeTheta: Double = 10000
    /// Only "default" (plain RoPE, as LLaMA-2/Vicuna use) is implemented.
    public var ropeType: String = "default"
    /// Qwen2-VL's M-RoPE: how many of the head's headDim / 2 rotary frequencies turn with the
    /// temporal, height and width positions (`rope_parameters.mrope_section`); nil for 1-D RoPE.
    public var mropeSection: [Int]? = nil
    /// Biases on the query, key and value projections (LLaMA's `attention_bias`; always on in Qwen2).
    public var attentionBias: Bool = false
    /// A bias on the output projection: LLaMA's `attention_bias` sets it too; Qwen2 has none.
    public var attentionOutputBias: Bool = false
    public var mlpBias: Bool = false
    public var tieWordEmbeddings: Bool = false
    public var bosTokenId: Int? = 1
    public var eosTokenIds: [Int] = [2]
    public var padTokenId: Int? = nil

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", padTokenId = "pad_token_id"
    }

    /// `rope_parameters` (current transformers) or `rope_scaling` (older files).
    struct RopeParameters: Codable {
        var ropeTheta: Double?
        var ropeType: String?
        var type: String?
        var mropeSection: [Int]?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type, mropeSection = "mrope_section" }
    }

    /// A configuration with transformers' defaults, changed by `adjust`.
    public init(_ adjust: (inout LlamaConfiguration) -> Void = { _ in }) { adjust(&self) }

    /// The `userInfo` key of a decoder whose absent keys take another family's defaults (a `LlamaConfiguration`).
    public static let defaultsKey = CodingUserInfoKey(rawValue: "LlamaConfiguration.defaults")!

    public init(from decoder: Decoder) throws {
        self = decoder.userInfo[Self.defaultsKey] as? LlamaConfiguration ?? LlamaConfiguration()
        let defaultBOS = bosTokenId
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&vocabSize, .vocabSize)
        try c.update(&hiddenSize, .hiddenSize)
        try c.update(&intermediateSize, .intermediateSize)
        try c.update(&numHiddenLayers, .numHiddenLayers)
        try c.update(&numAttentionHeads, .numAttentionHeads)
        // Defaults that follow other keys: as many key/value heads as heads, hidden / heads wide.
        numKeyValueHeads = numAttentionHeads
        try c.update(&numKeyValueHeads, .numKeyValueHeads)
        headDim = numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0
        try c.update(&headDim, .headDim)
        try c.update(&hiddenAct, .hiddenAct)
        try c.update(&maxPositionEmbeddings, .maxPositionEmbeddings)
        try c.update(&rmsNormEps, .rmsNormEps)
        try c.update(&attentionBias, .attentionBias)
        attentionOutputBias = attentionBias
        try c.update(&mlpBias, .mlpBias)
        try c.update(&tieWordEmbeddings, .tieWordEmbeddings)
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? (c.contains(.bosTokenId) ? nil : defaultBOS)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
        eosTokenIds = try c.integerList(.eosTokenId) ?? eosTokenIds
        let parameters = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
            ?? c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? parameters?.ropeTheta ?? ropeTheta
        ropeType = parameters?.ropeType ?? parameters?.type ?? ropeType
        mropeSection = parameters?.mropeSection
        // Older Qwen2-VL files name M-RoPE as a type of its own ("mrope"); it is the default RoPE per axis.
        if ropeType == "mrope" && mropeSection != nil { ropeType = "default" }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        if let mropeSection {
            try c.encode(RopeParameters(ropeTheta: ropeTheta, ropeType: ropeType, mropeSection: mropeSection), forKey: .ropeParameters)
        }
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(mlpBias, forKey: .mlpBias)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenIds, forKey: .eosTokenId)
        try c.encodeIfPresent(padTokenId, forKey: .padTokenId)
    }

    /// Checks what the decoder relies on; `file` names the config in the error.
    public func validate(file: String) throws {
        func fail(_ key: String, _ reason: String) -> ConfigurationError {
            .invalidValue(file: file, key: key, reason: reason)
        }
        try requirePositive(
            ["vocab_size": vocabSize, "hidden_size": hiddenSize, "intermediate_size": intermediateSize,
             "num_hidden_layers": numHiddenLayers, "num_attention_heads": numAttentionHeads,
             "num_key_value_heads": numKeyValueHeads, "head_dim": headDim], file: file)
        if numAttentionHeads % numKeyValueHeads != 0 {
            throw fail("num_key_value_heads", "(\(numKeyValueHeads)) must divide num_attention_heads (\(numAttentionHeads))")
        }
        if headDim % 2 != 0 { throw fail("head_dim", "must be even for rotary embeddings, got \(headDim)") }
        if hiddenAct != .silu { throw fail("hidden_act", "'\(hiddenAct.rawValue)' is not supported (only 'silu')") }
        if ropeType != "default" { throw fail("rope_type", "'\(ropeType)' is not supported (only 'default')") }
        if !(rmsNormEps > 0) { throw fail("rms_norm_eps", "must be positive, got \(rmsNormEps)") }
        if !(ropeTheta > 0) { throw fail("rope_theta", "must be positive, got \(ropeTheta)") }
        if let mropeSection, mropeSection.reduce(0, +) != headDim / 2 || mropeSection.contains(where: { $0 < 0 }) {
            throw fail("rope_parameters.mrope_section", "\(mropeSection) must be non-negative and add up to head_dim / 2 = \(headDim / 2)")
        }
    }
}
