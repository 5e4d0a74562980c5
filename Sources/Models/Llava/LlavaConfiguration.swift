import Foundation
import TensorCore
import Vision

/// `LlavaConfig` of transformers (`LlavaForConditionalGeneration`), the configuration schema of
/// every LLaVA-style family (`model_type` says which: "llava", "llava_next", ...).
public struct LlavaConfiguration: Codable, Equatable, Sendable {
    public var textConfig: LlamaConfiguration = LlamaConfiguration()
    public var visionConfig: CLIPVisionConfiguration = .llavaDefault
    public var imageTokenIndex: Int = 32000
    public var projectorHiddenAct: Activation = .gelu
    public var visionFeatureSelectStrategy: VisionFeatureSelectStrategy = .default
    /// One layer index (negative counts from the end), or several whose features are concatenated.
    public var visionFeatureLayers: [Int] = [-2]
    public var imageSeqLength: Int = 576
    public var multimodalProjectorBias: Bool = true
    /// The family's key in `ModelRegistry` ("llava" when config.json names none).
    public var modelType: String = LlavaModel.family.modelTypes[0]
    /// LLaVA-NeXT's candidate resolutions as [height, width] (transformers' default when absent).
    public var imageGridPinpoints: [[Int]] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

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
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&textConfig, .textConfig)
        try c.update(&visionConfig, .visionConfig)
        try c.update(&imageTokenIndex, .imageTokenId)
        try c.update(&imageTokenIndex, .imageTokenIndex)
        try c.update(&projectorHiddenAct, .projectorHiddenAct)
        try c.update(&visionFeatureSelectStrategy, .visionFeatureSelectStrategy)
        visionFeatureLayers = try c.integerList(.visionFeatureLayer) ?? visionFeatureLayers
        try c.update(&imageSeqLength, .imageSeqLength)
        try c.update(&multimodalProjectorBias, .multimodalProjectorBias)
        try c.update(&modelType, .modelType)
        try c.update(&imageGridPinpoints, .imageGridPinpoints)
    }

    /// Checks the parts and how they connect; `file` names the config in the error. Checks that
    /// only one family needs are that family's (`ModelFamily.validate`).
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
        if projectorHiddenAct == .silu {
            throw ConfigurationError.invalidValue(file: file, key: "projector_hidden_act", reason: "'silu' is not supported (gelu or quick_gelu)")
        }
    }

    /// `vision_feature_layer` resolved to indices of the tower's hidden states (0 = embeddings,
    /// k = after layer k).
    public var resolvedVisionFeatureLayers: [Int] {
        visionFeatureLayers.map { $0 < 0 ? visionConfig.numHiddenLayers + 1 + $0 : $0 }
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
        if try ModelRegistry.family(modelType: modelType).usesGridPinpoints {
            try c.encode(imageGridPinpoints, forKey: .imageGridPinpoints)
        }
    }
}
