import Foundation
import SafeTensors

// MARK: - Errors

/// A config.json that cannot describe a model we run. Names the file and the key.
public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case cannotRead(file: String, reason: String)
    case invalidJSON(file: String, detail: String)
    case unsupportedModelType(file: String, modelType: String)
    case invalidValue(file: String, key: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(file, reason): return "\(file): cannot read: \(reason)"
        case let .invalidJSON(file, detail): return "\(file): \(detail)"
        case let .unsupportedModelType(file, modelType):
            return "\(file): model_type '\(modelType)' is not supported (expected 'llama' or 'llava')"
        case let .invalidValue(file, key, reason): return "\(file): '\(key)' \(reason)"
        }
    }
}

// MARK: - Language model

/// `LlamaConfig` of transformers. Absent keys take transformers' defaults; both the hub's
/// `rope_theta` and current transformers' `rope_parameters` are read.
public struct LlamaConfiguration: Codable, Equatable, Sendable {
    public var vocabSize: Int = 32000
    public var hiddenSize: Int = 4096
    public var intermediateSize: Int = 11008
    public var numHiddenLayers: Int = 32
    public var numAttentionHeads: Int = 32
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var hiddenAct: String = "silu"
    public var maxPositionEmbeddings: Int = 2048
    public var rmsNormEps: Float = 1e-6
    public var ropeTheta: Double = 10000
    /// Only "default" (plain RoPE, as LLaMA-2/Vicuna use) is implemented.
    public var ropeType: String = "default"
    public var attentionBias: Bool = false
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
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type }
    }

    /// A configuration with transformers' defaults, changed by `adjust`.
    public init(_ adjust: (inout LlamaConfiguration) -> Void = { _ in }) {
        numKeyValueHeads = 32
        headDim = 128
        adjust(&self)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        vocabSize = try value(.vocabSize, vocabSize)
        hiddenSize = try value(.hiddenSize, hiddenSize)
        intermediateSize = try value(.intermediateSize, intermediateSize)
        numHiddenLayers = try value(.numHiddenLayers, numHiddenLayers)
        numAttentionHeads = try value(.numAttentionHeads, numAttentionHeads)
        numKeyValueHeads = try value(.numKeyValueHeads, numAttentionHeads)
        headDim = try value(.headDim, numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        hiddenAct = try value(.hiddenAct, hiddenAct)
        maxPositionEmbeddings = try value(.maxPositionEmbeddings, maxPositionEmbeddings)
        rmsNormEps = try value(.rmsNormEps, rmsNormEps)
        attentionBias = try value(.attentionBias, attentionBias)
        mlpBias = try value(.mlpBias, mlpBias)
        tieWordEmbeddings = try value(.tieWordEmbeddings, tieWordEmbeddings)
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? (c.contains(.bosTokenId) ? nil : 1)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
        // eos_token_id is an integer or a list of them.
        if let single = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) {
            eosTokenIds = [single]
        } else if let list = try? c.decodeIfPresent([Int].self, forKey: .eosTokenId) {
            eosTokenIds = list
        } else if c.contains(.eosTokenId), try !c.decodeNil(forKey: .eosTokenId) {
            throw DecodingError.typeMismatch(Int.self, .init(codingPath: c.codingPath + [CodingKeys.eosTokenId], debugDescription: "eos_token_id is neither an integer nor a list of integers"))
        }
        let parameters = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
            ?? c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? parameters?.ropeTheta ?? ropeTheta
        ropeType = parameters?.ropeType ?? parameters?.type ?? ropeType
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
        for (key, value) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                             ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                             ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim)] where value <= 0 {
            throw fail(key, "must be positive, got \(value)")
        }
        if numAttentionHeads % numKeyValueHeads != 0 {
            throw fail("num_key_value_heads", "(\(numKeyValueHeads)) must divide num_attention_heads (\(numAttentionHeads))")
        }
        if headDim % 2 != 0 { throw fail("head_dim", "must be even for rotary embeddings, got \(headDim)") }
        if hiddenAct != "silu" { throw fail("hidden_act", "'\(hiddenAct)' is not supported (only 'silu')") }
        if ropeType != "default" { throw fail("rope_type", "'\(ropeType)' is not supported (only 'default')") }
        if !(rmsNormEps > 0) { throw fail("rms_norm_eps", "must be positive, got \(rmsNormEps)") }
        if !(ropeTheta > 0) { throw fail("rope_theta", "must be positive, got \(ropeTheta)") }
    }
}

// MARK: - Vision tower

/// `CLIPVisionConfig` of transformers, with its defaults for absent keys.
public struct CLIPVisionConfiguration: Codable, Equatable, Sendable {
    public var hiddenSize: Int = 768
    public var intermediateSize: Int = 3072
    public var numHiddenLayers: Int = 12
    public var numAttentionHeads: Int = 12
    public var numChannels: Int = 3
    public var imageSize: Int = 224
    public var patchSize: Int = 32
    public var hiddenAct: String = "quick_gelu"
    public var layerNormEps: Float = 1e-5
    public var projectionDim: Int = 512

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numChannels = "num_channels", imageSize = "image_size"
        case patchSize = "patch_size", hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
        case projectionDim = "projection_dim"
    }

    public init(_ adjust: (inout CLIPVisionConfiguration) -> Void = { _ in }) { adjust(&self) }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        hiddenSize = try value(.hiddenSize, hiddenSize)
        intermediateSize = try value(.intermediateSize, intermediateSize)
        numHiddenLayers = try value(.numHiddenLayers, numHiddenLayers)
        numAttentionHeads = try value(.numAttentionHeads, numAttentionHeads)
        numChannels = try value(.numChannels, numChannels)
        imageSize = try value(.imageSize, imageSize)
        patchSize = try value(.patchSize, patchSize)
        hiddenAct = try value(.hiddenAct, hiddenAct)
        layerNormEps = try value(.layerNormEps, layerNormEps)
        projectionDim = try value(.projectionDim, projectionDim)
    }

    /// Checks what the vision tower relies on; `file` names the config in the error.
    public func validate(file: String) throws {
        func fail(_ key: String, _ reason: String) -> ConfigurationError {
            .invalidValue(file: file, key: "vision_config.\(key)", reason: reason)
        }
        for (key, value) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                             ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                             ("num_channels", numChannels), ("image_size", imageSize), ("patch_size", patchSize)] where value <= 0 {
            throw fail(key, "must be positive, got \(value)")
        }
        if hiddenSize % numAttentionHeads != 0 {
            throw fail("num_attention_heads", "(\(numAttentionHeads)) must divide hidden_size (\(hiddenSize))")
        }
        if imageSize % patchSize != 0 { throw fail("patch_size", "(\(patchSize)) must divide image_size (\(imageSize))") }
        if !["quick_gelu", "gelu"].contains(hiddenAct) { throw fail("hidden_act", "'\(hiddenAct)' is not supported (quick_gelu or gelu)") }
        if !(layerNormEps > 0) { throw fail("layer_norm_eps", "must be positive, got \(layerNormEps)") }
    }

    /// LlavaConfig's vision tower when config.json gives none: CLIP ViT-L/14 at 336 pixels.
    public static let llavaDefault = CLIPVisionConfiguration {
        $0.intermediateSize = 4096; $0.hiddenSize = 1024; $0.patchSize = 14; $0.imageSize = 336
        $0.numHiddenLayers = 24; $0.numAttentionHeads = 16; $0.projectionDim = 768
    }
}

// MARK: - LLaVA

/// `LlavaConfig` of transformers (`LlavaForConditionalGeneration`).
public struct LlavaConfiguration: Codable, Equatable, Sendable {
    public var textConfig: LlamaConfiguration = LlamaConfiguration()
    public var visionConfig: CLIPVisionConfiguration = .llavaDefault
    public var imageTokenIndex: Int = 32000
    public var projectorHiddenAct: String = "gelu"
    public var visionFeatureSelectStrategy: String = "default"
    /// One layer index (negative counts from the end), or several whose features are concatenated.
    public var visionFeatureLayers: [Int] = [-2]
    public var imageSeqLength: Int = 576
    public var multimodalProjectorBias: Bool = true
    /// "llava" (`LlavaForConditionalGeneration`) or "llava_next" (`LlavaNextForConditionalGeneration`:
    /// anyres tiles, unpadding and `image_newline`).
    public var modelType: String = "llava"
    /// LLaVA-NeXT's candidate resolutions as [height, width] (transformers' default when absent).
    public var imageGridPinpoints: [[Int]] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

    public var isNext: Bool { modelType == "llava_next" }

    enum CodingKeys: String, CodingKey {
        case textConfig = "text_config", visionConfig = "vision_config"
        case imageTokenIndex = "image_token_index", imageTokenId = "image_token_id"
        case projectorHiddenAct = "projector_hidden_act"
        case visionFeatureSelectStrategy = "vision_feature_select_strategy"
        case visionFeatureLayer = "vision_feature_layer", imageSeqLength = "image_seq_length"
        case multimodalProjectorBias = "multimodal_projector_bias"
        case modelType = "model_type", imageGridPinpoints = "image_grid_pinpoints"
    }

    public init(_ adjust: (inout LlavaConfiguration) -> Void = { _ in }) { adjust(&self) }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        textConfig = try value(.textConfig, textConfig)
        visionConfig = try value(.visionConfig, visionConfig)
        imageTokenIndex = try c.decodeIfPresent(Int.self, forKey: .imageTokenIndex)
            ?? c.decodeIfPresent(Int.self, forKey: .imageTokenId) ?? imageTokenIndex
        projectorHiddenAct = try value(.projectorHiddenAct, projectorHiddenAct)
        visionFeatureSelectStrategy = try value(.visionFeatureSelectStrategy, visionFeatureSelectStrategy)
        if let single = try? c.decodeIfPresent(Int.self, forKey: .visionFeatureLayer) {
            visionFeatureLayers = [single]
        } else if let list = try c.decodeIfPresent([Int].self, forKey: .visionFeatureLayer) {
            visionFeatureLayers = list
        }
        imageSeqLength = try value(.imageSeqLength, imageSeqLength)
        multimodalProjectorBias = try value(.multimodalProjectorBias, multimodalProjectorBias)
        modelType = try value(.modelType, modelType)
        imageGridPinpoints = try value(.imageGridPinpoints, imageGridPinpoints)
    }

    /// Checks the parts and how they connect; `file` names the config in the error.
    public func validate(file: String) throws {
        try textConfig.validate(file: file)
        try visionConfig.validate(file: file)
        let layers = visionConfig.numHiddenLayers
        for layer in visionFeatureLayers where layer < -(layers + 1) || layer > layers {
            throw ConfigurationError.invalidValue(
                file: file, key: "vision_feature_layer",
                reason: "\(layer) is outside -\(layers + 1)...\(layers) for a \(layers)-layer vision tower")
        }
        if visionFeatureLayers.isEmpty {
            throw ConfigurationError.invalidValue(file: file, key: "vision_feature_layer", reason: "is an empty list")
        }
        if !["default", "full"].contains(visionFeatureSelectStrategy) {
            throw ConfigurationError.invalidValue(
                file: file, key: "vision_feature_select_strategy", reason: "'\(visionFeatureSelectStrategy)' is not 'default' or 'full'")
        }
        if isNext && visionFeatureSelectStrategy != "default" {
            throw ConfigurationError.invalidValue(
                file: file, key: "vision_feature_select_strategy",
                reason: "LLaVA-NeXT lays each tile's patches out as a square grid, which needs 'default' (no class token)")
        }
        if isNext && (imageGridPinpoints.isEmpty || imageGridPinpoints.contains { $0.count != 2 || $0.contains { $0 <= 0 } }) {
            throw ConfigurationError.invalidValue(
                file: file, key: "image_grid_pinpoints", reason: "must be a non-empty list of [height, width] pairs of positive sizes")
        }
        if !["gelu", "quick_gelu"].contains(projectorHiddenAct) {
            throw ConfigurationError.invalidValue(
                file: file, key: "projector_hidden_act", reason: "'\(projectorHiddenAct)' is not supported (gelu or quick_gelu)")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(textConfig, forKey: .textConfig)
        try c.encode(visionConfig, forKey: .visionConfig)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encode(projectorHiddenAct, forKey: .projectorHiddenAct)
        try c.encode(visionFeatureSelectStrategy, forKey: .visionFeatureSelectStrategy)
        if visionFeatureLayers.count == 1 {
            try c.encode(visionFeatureLayers[0], forKey: .visionFeatureLayer)
        } else {
            try c.encode(visionFeatureLayers, forKey: .visionFeatureLayer)
        }
        try c.encode(imageSeqLength, forKey: .imageSeqLength)
        try c.encode(multimodalProjectorBias, forKey: .multimodalProjectorBias)
        try c.encode(modelType, forKey: .modelType)
        if isNext { try c.encode(imageGridPinpoints, forKey: .imageGridPinpoints) }
    }
}

// MARK: - config.json

/// What a checkpoint directory's config.json describes.
public enum ModelConfiguration: Equatable, Sendable {
    case llama(LlamaConfiguration)
    case llava(LlavaConfiguration)

    /// The language model's configuration, whichever the kind.
    public var text: LlamaConfiguration {
        switch self {
        case let .llama(configuration): return configuration
        case let .llava(configuration): return configuration.textConfig
        }
    }

    /// Reads and validates `config.json`, choosing the kind by `model_type`.
    public static func load(from url: URL) throws -> ModelConfiguration {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigurationError.cannotRead(file: url.path, reason: error.localizedDescription)
        }
        return try parse(data, file: url.path)
    }

    public static func parse(_ data: Data, file: String) throws -> ModelConfiguration {
        struct Kind: Decodable {
            let modelType: String?
            let architectures: [String]?
            enum CodingKeys: String, CodingKey { case modelType = "model_type", architectures }
        }
        let decoder = JSONDecoder()
        do {
            let kind = try decoder.decode(Kind.self, from: data)
            let architectureTypes = ["LlavaForConditionalGeneration": "llava", "LlavaNextForConditionalGeneration": "llava_next"]
            let modelType = kind.modelType ?? kind.architectures?.first.flatMap { architectureTypes[$0] } ?? "llama"
            let configuration: ModelConfiguration
            switch modelType {
            case "llama":
                configuration = .llama(try decoder.decode(LlamaConfiguration.self, from: data))
            case "llava", "llava_next":
                var llava = try decoder.decode(LlavaConfiguration.self, from: data)
                llava.modelType = modelType
                configuration = .llava(llava)
            default:
                throw ConfigurationError.unsupportedModelType(file: file, modelType: modelType)
            }
            switch configuration {
            case let .llama(text): try text.validate(file: file)
            case let .llava(llava): try llava.validate(file: file)
            }
            return configuration
        } catch let error as ConfigurationError {
            throw error
        } catch let error as DecodingError {
            throw ConfigurationError.invalidJSON(file: file, detail: describeDecodingError(error))
        } catch {
            throw ConfigurationError.invalidJSON(file: file, detail: "\(error)")
        }
    }
}
