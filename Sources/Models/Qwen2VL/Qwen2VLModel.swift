import Foundation
import SafeTensors
import TensorCore
import TokenReduction
import Vision

// MARK: - Configuration

/// `Qwen2VLConfig` (and `Qwen2_5_VLConfig`) of transformers: the Qwen2 decoder with M-RoPE (its
/// keys at the top level in the hub's files, under `text_config` in what transformers 5 saves),
/// the vision tower's `vision_config` of the generation `modelType` names, and the ids of the
/// image's special tokens.
public struct Qwen2VLConfiguration: Equatable, Sendable {
    public var text: LlamaConfiguration
    public var vision: Qwen2VLVisionConfiguration
    /// `<|image_pad|>`: one per merged patch of an image.
    public var imageTokenId = 151_655
    /// `<|vision_start|>` / `<|vision_end|>`: text tokens around each image's pads.
    public var visionStartTokenId = 151_652
    public var visionEndTokenId = 151_653
    public var modelType = "qwen2_vl"

    public init(text: LlamaConfiguration, vision: Qwen2VLVisionConfiguration) {
        self.text = text
        self.vision = vision
        modelType = vision.generation.rawValue
    }

    private struct File: Decodable {
        let textConfig: Qwen2TextConfiguration?
        let visionConfig: Qwen2VLVisionConfiguration?
        let imageTokenId: Int?, visionStartTokenId: Int?, visionEndTokenId: Int?
        let tieWordEmbeddings: Bool?
        enum CodingKeys: String, CodingKey {
            case tieWordEmbeddings = "tie_word_embeddings"
            case textConfig = "text_config", visionConfig = "vision_config", imageTokenId = "image_token_id"
            case visionStartTokenId = "vision_start_token_id", visionEndTokenId = "vision_end_token_id"
        }
    }

    /// config.json's bytes in either layout for the generation `modelType` names; `file` names it in errors.
    public static func parse(_ data: Data, file: String, modelType: String) throws -> Qwen2VLConfiguration {
        let generation = Qwen2VLVisionGeneration(rawValue: modelType) ?? .qwen2VL
        let userInfo: [CodingUserInfoKey: any Sendable] = [
            LlamaConfiguration.defaultsKey: LlamaConfiguration.qwen2VLDefaults, Qwen2VLVisionGeneration.key: generation]
        let outer = try decodeConfiguration(File.self, from: data, file: file, userInfo: userInfo)
        let nested = outer.textConfig != nil
        let textFile = try outer.textConfig ?? decodeConfiguration(Qwen2TextConfiguration.self, from: data, file: file, userInfo: userInfo)
        var text = try textFile.checked(file: file, keyPrefix: nested ? "text_config." : "")
        if !textFile.statesTying, let tied = outer.tieWordEmbeddings { text.tieWordEmbeddings = tied }
        var configuration = Qwen2VLConfiguration(
            text: text, vision: outer.visionConfig ?? (generation == .qwen25VL ? .qwen25VLDefaults : .init()))
        configuration.imageTokenId = outer.imageTokenId ?? configuration.imageTokenId
        configuration.visionStartTokenId = outer.visionStartTokenId ?? configuration.visionStartTokenId
        configuration.visionEndTokenId = outer.visionEndTokenId ?? configuration.visionEndTokenId
        try configuration.validate(file: file, textKeyPrefix: nested ? "text_config." : "")
        return configuration
    }

    /// Checks the parts and how they connect; `file` names the config in errors.
    public func validate(file: String, textKeyPrefix: String = "") throws {
        try text.validate(file: file)
        try vision.validate(file: file)
        guard let sections = text.mropeSection else {
            throw ConfigurationError.invalidValue(
                file: file, key: textKeyPrefix + "rope_parameters.mrope_section", reason: "is missing: Qwen2-VL needs the M-RoPE sections")
        }
        if sections.count != 3 {
            throw ConfigurationError.invalidValue(
                file: file, key: textKeyPrefix + "rope_parameters.mrope_section", reason: "must have 3 entries (temporal, height, width), got \(sections)")
        }
        if vision.hiddenSize != text.hiddenSize {
            throw ConfigurationError.invalidValue(
                file: file, key: vision.generation == .qwen25VL ? "vision_config.out_hidden_size" : "vision_config.hidden_size",
                reason: "(\(vision.hiddenSize)) must equal the language model's hidden_size (\(text.hiddenSize)): the merger writes its tokens")
        }
        for (key, id) in [("image_token_id", imageTokenId), ("vision_start_token_id", visionStartTokenId), ("vision_end_token_id", visionEndTokenId)]
        where id < 0 || id >= text.vocabSize {
            throw ConfigurationError.invalidValue(file: file, key: key, reason: "\(id) is outside the vocabulary (0..<\(text.vocabSize))")
        }
    }
}

extension LlamaConfiguration {
    /// transformers' `Qwen2VLTextConfig` defaults (Qwen2-VL-7B's decoder), for absent keys.
    public static let qwen2VLDefaults = LlamaConfiguration {
        $0 = qwen2Defaults
        $0.hiddenSize = 8192
        $0.intermediateSize = 29_568
        $0.numHiddenLayers = 80
        $0.numAttentionHeads = 64
        $0.numKeyValueHeads = 8
        $0.ropeTheta = 1_000_000
        $0.maxPositionEmbeddings = 32_768
    }
}

// MARK: - Weight layouts

/// Where a Qwen2-VL checkpoint keeps its parts: the hub's files (and transformers 5's
/// `save_pretrained`) use `model.*` for the decoder and `visual.*` for the tower; transformers
/// 4.5x saved them as `model.language_model.*` and `model.visual.*`.
public struct Qwen2VLLayout: Equatable, Sendable {
    public let language: LanguageModelLayout
    public let visionPrefix: String

    public static let hub = Qwen2VLLayout(language: .llama, visionPrefix: "visual.")
    public static let nested = Qwen2VLLayout(
        language: LanguageModelLayout(modelPrefix: "model.language_model.", lmHeadPrefix: "lm_head."), visionPrefix: "model.visual.")

    /// The layout whose patch embedding `checkpoint` holds (the hub's when neither).
    public static func detect(_ checkpoint: Checkpoint) -> Qwen2VLLayout {
        checkpoint.contains(nested.visionPrefix + "patch_embed.proj.weight") ? .nested : .hub
    }

    public var ownedPrefixes: [String] { [language.modelPrefix, language.lmHeadPrefix, visionPrefix] }
}

// MARK: - Model

/// `Qwen2VLForConditionalGeneration` for images: the vision tower's merged patches replace the
/// prompt's `<|image_pad|>` tokens, and every token has a (temporal, height, width) position for
/// the decoder's M-RoPE (`MultimodalRotaryPositions`).
public final class Qwen2VLModel: VisionLanguageModel {
    public let configuration: Qwen2VLConfiguration
    public let languageModel: LlamaModel
    public let visionTower: Qwen2VLVisionTower

    public var decoder: any LanguageDecoder { languageModel }
    public var imageTokenId: Int { configuration.imageTokenId }
    /// The chat template's text for one image (the pads are expanded per merged patch).
    public var imagePlaceholder: String { "<|vision_start|><|image_pad|><|vision_end|>" }
    private var mergeSize: Int { configuration.vision.spatialMergeSize }

    public init(configuration: Qwen2VLConfiguration, loader: WeightSource, layout: Qwen2VLLayout) {
        self.configuration = configuration
        languageModel = LlamaModel(configuration: configuration.text, loader: loader, layout: layout.language)
        visionTower = Qwen2VLVisionTower(configuration: configuration.vision, loader: loader, prefix: layout.visionPrefix)
    }

    public func imageFeatures(_ image: ImageInput) -> Tensor {
        visionTower.forward(pixelValues: image.tiles[0], grids: [patchGrid(image)])
    }

    public func imageTokenCount(_ image: ImageInput) -> Int {
        let grid = patchGrid(image)
        return grid.frames * grid.rows * grid.columns / (mergeSize * mergeSize)
    }

    private func patchGrid(_ image: ImageInput) -> MultimodalRotaryPositions.ImageGrid {
        guard let grid = image.patchGrid else { preconditionFailure("a Qwen2-VL image input carries its patch grid") }
        return grid
    }

    public func promptPositions(tokens: [Int], images: [ImageInput]) throws -> Positions? {
        try MultimodalRotaryPositions(
            isImageToken: tokens.map { $0 == imageTokenId }, grids: images.map(patchGrid), mergeSize: mergeSize
        ).positions
    }

    public func makeImageProcessor(directory: URL, options: ImageProcessingOptions) throws -> any ImageProcessing {
        if options.maxTiles != nil { throw PipelineError.maxTilesWithoutAnyres(directory: directory.path) }
        if options.padToSquare { throw PipelineError.padToSquareWithDynamicResolution(directory: directory.path) }
        let config = try Qwen2VLImageProcessorConfig.load(contentsOf: try processorConfigURL(in: directory))
        let vision = configuration.vision
        if config.patchSize != vision.patchSize || config.mergeSize != vision.spatialMergeSize || config.temporalPatchSize != vision.temporalPatchSize {
            throw PipelineError.processorDisagrees(
                directory: directory.path,
                reason: "the image processor's patch_size \(config.patchSize), merge_size \(config.mergeSize) and temporal_patch_size "
                    + "\(config.temporalPatchSize) must equal vision_config's \(vision.patchSize), \(vision.spatialMergeSize) and \(vision.temporalPatchSize)")
        }
        return Qwen2VLImageProcessing(processor: Qwen2VLImageProcessor(config: config))
    }

    // MARK: FLOPs

    public var visionShape: Qwen2VLVisionShape {
        let vision = configuration.vision
        let windowed = vision.generation == .qwen25VL
        return Qwen2VLVisionShape(
            embed: vision.embedDim, mlp: vision.mlpWidth, depth: vision.depth, patchDimension: vision.patchDimension, mergeSize: mergeSize,
            gatedMLP: windowed, windowTokens: windowed ? vision.windowTokens : nil,
            fullAttentionBlocks: windowed ? Set(vision.fullAttentionBlocks).count : 0)
    }

    public func exactVisionFLOPs(_ images: [ImageInput]) -> Double {
        let grids = images.map(patchGrid).flatMap { grid in
            Array(repeating: (rows: grid.rows / mergeSize, columns: grid.columns / mergeSize), count: grid.frames)
        }
        return FLOPs.exactQwen2VLVision(shape: visionShape, tokenGrids: grids, textHidden: configuration.text.hiddenSize)
    }
}

/// Qwen2-VL's processor behind `ImageProcessing`: one input holding all the image's patch rows.
public struct Qwen2VLImageProcessing: ImageProcessing {
    public let processor: Qwen2VLImageProcessor

    public func prepare(_ image: RGBImage, source: String) throws -> ImageInput {
        let prepared: Qwen2VLPixelValues
        do {
            prepared = try processor.preprocess(image)
        } catch {
            throw PipelineError.imageUnusable(source: source, reason: error.reason)
        }
        let patches = prepared.gridT * prepared.gridH * prepared.gridW
        return ImageInput(
            tiles: [Tensor(shape: [patches, prepared.patchDimension], values: prepared.values)],
            patchGrid: .init(frames: prepared.gridT, rows: prepared.gridH, columns: prepared.gridW))
    }

    public func imageTokenCount(height: Int, width: Int) -> Int {
        let config = processor.config
        let factor = config.patchSize * config.mergeSize
        guard let size = try? Qwen2VLImageProcessor.smartResize(
            height: height, width: width, factor: factor, minPixels: config.minPixels, maxPixels: config.maxPixels)
        else { return 0 }
        return (size.height / factor) * (size.width / factor)
    }

    /// The image resized as the tower sees it (before normalisation), on its grid of merged patches.
    public func keptTokenView(_ image: RGBImage) throws -> (view: RGBImage, grid: TokenGrid)? {
        let config = processor.config
        let factor = config.patchSize * config.mergeSize
        var view = image
        if config.doResize {
            let size = try Qwen2VLImageProcessor.smartResize(
                height: image.height, width: image.width, factor: factor, minPixels: config.minPixels, maxPixels: config.maxPixels)
            view = image.resized(width: size.width, height: size.height, filter: config.resample)
        }
        return (view, TokenGrid(rows: view.height / factor, columns: view.width / factor))
    }

    public var drawsKeptTokens: Bool { true }
}

extension Qwen2VLModel {
    /// Qwen2-VL (`Qwen2VLForConditionalGeneration`, model_type qwen2_vl) in the registry.
    public static let family = family(name: "Qwen2-VL", generation: .qwen2VL, architecture: "Qwen2VLForConditionalGeneration")
    /// Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`, model_type qwen2_5_vl): the same model
    /// with Qwen2.5-VL's vision tower (RMSNorm, gated MLP, window attention).
    public static let qwen25Family = family(name: "Qwen2.5-VL", generation: .qwen25VL, architecture: "Qwen2_5_VLForConditionalGeneration")

    static func family(name: String, generation: Qwen2VLVisionGeneration, architecture: String) -> ModelFamily {
        ModelFamily(
        name: name, modelTypes: [generation.rawValue], architectures: [architecture],
        parse: { data, file in .qwen2VL(try Qwen2VLConfiguration.parse(data, file: file, modelType: generation.rawValue)) },
        build: { configuration, checkpoint, source in
            guard case let .qwen2VL(qwen) = configuration, qwen.vision.generation == generation else { throw FamilyMismatchError(family: name) }
            let layout = checkpoint.map(Qwen2VLLayout.detect) ?? .hub
            try qwen.text.checkSizes(against: checkpoint, layout: layout.language, keyPrefix: "text_config.")
            let model = Qwen2VLModel(configuration: qwen, loader: source, layout: layout)
            return BuiltModel(
                decoder: model.languageModel, visionLanguageModel: model, ownedPrefixes: layout.ownedPrefixes,
                languageLayout: layout.language)
        })
    }
}
