import Foundation
import SafeTensors
import TensorCore
import TokenReduction
import Vision

// MARK: - Weight names

/// Where a LLaVA checkpoint keeps its parts.
public struct LlavaLayout: Equatable, Sendable {
    public let language: LanguageModelLayout
    public let visionPrefix: String
    public let projectorPrefix: String
    /// LLaVA-NeXT's (hidden,) newline embedding (absent from LLaVA-1.5 checkpoints).
    public let imageNewlineName: String

    /// llava-hf's hub files: `vision_tower.vision_model.*`.
    public static let hub = LlavaLayout(
        language: .llavaHub, visionPrefix: "vision_tower.vision_model.", projectorPrefix: "multi_modal_projector.", imageNewlineName: "image_newline")
    /// transformers 5's save_pretrained: `vision_tower.*`.
    public static let saved = LlavaLayout(
        language: .llavaHub, visionPrefix: "vision_tower.", projectorPrefix: "multi_modal_projector.", imageNewlineName: "image_newline")
    /// transformers 4.5x's save_pretrained: everything under `model.`.
    public static let nested = LlavaLayout(
        language: .llavaNested, visionPrefix: "model.vision_tower.vision_model.", projectorPrefix: "model.multi_modal_projector.",
        imageNewlineName: "model.image_newline")

    public static func detect(in checkpoint: Checkpoint) -> LlavaLayout {
        [hub, saved, nested].first { checkpoint.contains($0.visionPrefix + "embeddings.class_embedding") } ?? hub
    }

    /// Every tensor under these prefixes must be used.
    public var ownedPrefixes: [String] {
        [language.modelPrefix, language.lmHeadPrefix, visionPrefix, projectorPrefix, imageNewlineName]
    }
}

// MARK: - Model

/// `LlavaForConditionalGeneration` (LLaVA-1.5): the CLIP vision tower, the projector, and the
/// LLaMA decoder that sees one tile's projected features in place of each image's tokens. Other
/// LLaVA-style families (LLaVA-NeXT) subclass it and override how an image becomes features.
open class LlavaModel: VisionLanguageModel {
    public let configuration: LlavaConfiguration
    public let visionTower: CLIPVisionTower
    public let projector: MultiModalProjector
    public let languageModel: LlamaModel

    /// Builds the parts from `loader` under `layout`; with a checkpoint, call
    /// `WeightLoader.finish` afterwards to report what did not match.
    public required init(configuration: LlavaConfiguration, loader: WeightSource, layout: LlavaLayout) {
        self.configuration = configuration
        visionTower = CLIPVisionTower(configuration: configuration.visionConfig, loader: loader, prefix: layout.visionPrefix)
        projector = MultiModalProjector(
            loader: loader, prefix: layout.projectorPrefix,
            inFeatures: configuration.visionConfig.hiddenSize * configuration.visionFeatureLayers.count,
            outFeatures: configuration.textConfig.hiddenSize, bias: configuration.multimodalProjectorBias,
            activation: configuration.projectorHiddenAct)
        languageModel = LlamaModel(configuration: configuration.textConfig, loader: loader, layout: layout.language)
    }

    public var decoder: any LanguageDecoder { languageModel }
    public var imageTokenId: Int { configuration.imageTokenIndex }

    /// Image tokens one tile becomes: every patch, plus the class token with strategy "full".
    public var tokensPerTile: Int {
        visionTower.patchCount + (configuration.visionFeatureSelectStrategy == .full ? 1 : 0)
    }

    /// Row of the tower's states where the selected features start (1 with strategy "default": no class token).
    public var firstFeatureRow: Int { configuration.visionFeatureSelectStrategy == .full ? 0 : 1 }

    public var resolvedVisionFeatureLayers: [Int] { configuration.resolvedVisionFeatureLayers }

    /// LLaVA-NeXT's (textHidden,) newline embedding; nil for families without one.
    open var imageNewline: Tensor? { nil }

    // MARK: Tiles

    /// The vision tower's selected features (tokensPerTile, visionHidden · layers), before the projector.
    public func visionFeatures(pixelValues: Tensor) -> Tensor {
        visionFeatures(hiddenStates: visionTower.hiddenStates(pixelValues: pixelValues, indices: configuration.visionFeatureLayers))
    }

    /// The selected features (tokensPerTile, visionHidden · layers) of the tower's hidden states
    /// at `resolvedVisionFeatureLayers`, each (patches + 1, visionHidden), concatenated per token.
    public func visionFeatures(hiddenStates states: [Tensor]) -> Tensor {
        let first = firstFeatureRow
        let tokens = states[0].size(0) - first, width = configuration.visionConfig.hiddenSize
        let features = Tensor(shape: [tokens, width * states.count])  // (tokens, hidden · layers)
        for (layer, state) in states.enumerated() {
            for token in 0..<tokens {
                (features.pointer + token * width * states.count + layer * width)
                    .update(from: state.pointer + (token + first) * width, count: width)
            }
        }
        return features
    }

    /// Projected image features (tokensPerTile, textHidden) of one tile's pixelValues(channels, side, side).
    public func imageFeatures(pixelValues: Tensor) -> Tensor {
        projector(visionFeatures(pixelValues: pixelValues))
    }

    // MARK: Images (what a family overrides)

    /// LLaVA-1.5: an image is its one tile's features, (tokensPerTile, textHidden).
    open func imageFeatures(_ image: ImageInput) -> Tensor {
        assembleImageFeatures(tileFeatures: image.tiles.map { imageFeatures(pixelValues: $0) }, image: image)
    }

    /// One image's features (image tokens, textHidden) from its tiles' projected features, each
    /// (patches, textHidden). LLaVA-1.5: the single tile's.
    open func assembleImageFeatures(tileFeatures: [Tensor], image: ImageInput) -> Tensor { tileFeatures[0] }

    /// The backward of `assembleImageFeatures`: dblock(image tokens, textHidden) back to one
    /// gradient per tile; gradients of the assembly's own parameters are added to `gradients`.
    open func assembleImageFeaturesBackward(_ dBlock: Tensor, image: ImageInput, gradients: LlavaModel?) -> [Tensor] { [dBlock] }

    open func imageTokenCount(_ image: ImageInput) -> Int { tokensPerTile }

    open func makeImageProcessor(directory: URL, options: ImageProcessingOptions) throws -> any ImageProcessing {
        if options.maxTiles != nil { throw PipelineError.maxTilesWithoutAnyres(directory: directory.path) }
        let config = try CLIPImageProcessorConfig.load(contentsOf: try processorConfigURL(in: directory))
        return LlavaImageProcessor(
            clip: CLIPImageProcessor(config: config, padsToSquare: options.padToSquare),
            tileSide: configuration.visionConfig.imageSize, tokensPerTile: tokensPerTile,
            patchesPerSide: visionTower.patchesPerSide)
    }

    /// The rows of each image's block in `tokens`: `counts[k]` tokens for image k, or
    /// `tokensPerTile` each when not given.
    public func imageBlocks(in tokens: [Int], counts: [Int]? = nil) -> [Range<Int>] {
        Models.imageBlocks(in: tokens, imageTokenId: imageTokenId, counts: counts ?? [], defaultCount: counts == nil ? tokensPerTile : nil)
    }

    // MARK: FLOPs

    public var visionShape: VisionShape {
        let vision = configuration.visionConfig
        return VisionShape(
            hidden: vision.hiddenSize, intermediate: vision.intermediateSize, heads: vision.numAttentionHeads,
            layersRun: resolvedVisionFeatureLayers.max() ?? vision.numHiddenLayers, patchSize: vision.patchSize,
            channels: vision.numChannels, patchesPerTile: visionTower.patchCount)
    }

    public var projectorInputWidth: Int { configuration.visionConfig.hiddenSize * configuration.visionFeatureLayers.count }

    public func exactVisionFLOPs(_ images: [ImageInput]) -> Double {
        FLOPs.exactVision(
            shape: visionShape, tiles: images.reduce(0) { $0 + $1.tiles.count }, imageTokens: images.reduce(0) { $0 + imageTokenCount($1) },
            projectorInput: projectorInputWidth, textHidden: configuration.textConfig.hiddenSize)
    }

    // MARK: Family

    /// LLaVA-1.5 in the registry.
    public static let family = ModelFamily.llavaStyle(
        name: "LLaVA-1.5", modelTypes: ["llava"], architectures: ["LlavaForConditionalGeneration"], model: LlavaModel.self)

    /// Checks that only this family needs; LLaVA-1.5 needs nothing beyond the shared schema.
    open class func validate(_ configuration: LlavaConfiguration, file: String) throws {}
}

/// The processor settings file of a checkpoint directory: preprocessor_config.json as llava-hf
/// ships it, or processor_config.json as current transformers saves it.
public func processorConfigURL(in directory: URL) throws -> URL {
    let candidates = ["preprocessor_config.json", "processor_config.json"]
    guard let url = candidates.map({ directory.appendingPathComponent($0) }).first(where: { FileManager.default.fileExists(atPath: $0.path) })
    else { throw PipelineError.missingFile(directory: directory.path, expected: candidates) }
    return url
}
