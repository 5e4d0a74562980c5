import Foundation
import SafeTensors
import TensorCore

/// `CLIPVisionConfig` of transformers, with its defaults for absent keys.
public struct CLIPVisionConfiguration: Codable, Equatable, Sendable {
    public var hiddenSize: Int = 768
    public var intermediateSize: Int = 3072
    public var numHiddenLayers: Int = 12
    public var numAttentionHeads: Int = 12
    public var numChannels: Int = 3
    public var imageSize: Int = 224
    public var patchSize: Int = 32
    public var hiddenAct: Activation = .quickGelu
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
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&hiddenSize, .hiddenSize)
        try c.update(&intermediateSize, .intermediateSize)
        try c.update(&numHiddenLayers, .numHiddenLayers)
        try c.update(&numAttentionHeads, .numAttentionHeads)
        try c.update(&numChannels, .numChannels)
        try c.update(&imageSize, .imageSize)
        try c.update(&patchSize, .patchSize)
        try c.update(&hiddenAct, .hiddenAct)
        try c.update(&layerNormEps, .layerNormEps)
        try c.update(&projectionDim, .projectionDim)
    }

    /// Checks what the vision tower relies on; `file` names the config in the error.
    public func validate(file: String) throws {
        func fail(_ key: String, _ reason: String) -> ConfigurationError {
            .invalidValue(file: file, key: "vision_config.\(key)", reason: reason)
        }
        try requirePositive(
            ["hidden_size": hiddenSize, "intermediate_size": intermediateSize, "num_hidden_layers": numHiddenLayers,
             "num_attention_heads": numAttentionHeads, "num_channels": numChannels, "image_size": imageSize,
             "patch_size": patchSize], file: file, keyPrefix: "vision_config.")
        if hiddenSize % numAttentionHeads != 0 {
            throw fail("num_attention_heads", "(\(numAttentionHeads)) must divide hidden_size (\(hiddenSize))")
        }
        if imageSize % patchSize != 0 { throw fail("patch_size", "(\(patchSize)) must divide image_size (\(imageSize))") }
        if hiddenAct == .silu { throw fail("hidden_act", "'silu' is not supported (quick_gelu or gelu)") }
        if !(layerNormEps > 0) { throw fail("layer_norm_eps", "must be positive, got \(layerNormEps)") }
    }

    /// LlavaConfig's vision tower when config.json gives none: CLIP ViT-L/14 at 336 pixels.
    public static let llavaDefault = CLIPVisionConfiguration {
        $0.intermediateSize = 4096; $0.hiddenSize = 1024; $0.patchSize = 14; $0.imageSize = 336
        $0.numHiddenLayers = 24; $0.numAttentionHeads = 16; $0.projectionDim = 768
    }
}

extension CLIPVisionConfiguration {
    /// Checks the sizes the weights fix against `checkpoint`'s header before the tower is built.
    func checkSizes(against checkpoint: Checkpoint?, prefix p: String, keyPrefix: String) throws {
        try checkConfigurationSizes(
            checkpoint, keyPrefix: keyPrefix,
            [ConfigurationSize(key: "hidden_size", value: hiddenSize, tensor: p + "embeddings.class_embedding", axis: 0),
             ConfigurationSize(key: "intermediate_size", value: intermediateSize, tensor: p + "encoder.layers.0.mlp.fc1.weight", axis: 0)],
            layers: ("num_hidden_layers", numHiddenLayers, { "\(p)encoder.layers.\($0).layer_norm1.weight" }))
    }
}
