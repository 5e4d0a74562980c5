import Foundation
import Models
import TensorCore
import Tokenizer
import TokenReduction
import Vision

/// Problems with what a user asked the pipeline to do, each naming what is wrong.
public enum PipelineError: Error, Equatable, CustomStringConvertible {
    case missingFile(directory: String, expected: [String])
    case notAVisionLanguageModel(directory: String)
    case promptWithoutImage(prompt: String)
    case promptWithSeveralImages(count: Int, images: Int)
    case promptTooLong(tokens: Int, imageTokens: Int, context: Int)
    case imageSizeMismatch(file: String, width: Int, height: Int, expected: Int)
    case noGridResolution(file: String, maxTiles: Int)
    case maxTilesWithoutAnyres(directory: String)
    case padToSquareWithAnyres(directory: String)
    case keptPictureNeedsSingleTile(directory: String)

    public var description: String {
        switch self {
        case let .missingFile(directory, expected):
            return "\(directory): no \(expected.joined(separator: " or ")) in the checkpoint directory"
        case let .notAVisionLanguageModel(directory):
            return "\(directory): config.json describes a text-only model; --image needs a LLaVA checkpoint"
        case let .promptWithoutImage(prompt):
            return "the prompt has no <image> placeholder: \(prompt.debugDescription)"
        case let .promptWithSeveralImages(count, images):
            return "the prompt has \(count) <image> placeholders but \(images) image\(images == 1 ? " was" : "s were") given"
        case let .imageSizeMismatch(file, width, height, expected):
            return "\(file) was processed to \(width)x\(height) but the vision tower takes \(expected)x\(expected) (check crop_size in the processor config)"
        case let .noGridResolution(file, maxTiles):
            return "\(file): no image_grid_pinpoints resolution has at most \(maxTiles) tiles (--max-tiles)"
        case let .maxTilesWithoutAnyres(directory):
            return "\(directory): --max-tiles applies to LLaVA-NeXT checkpoints (anyres tiles); this one takes one tile per image"
        case let .padToSquareWithAnyres(directory):
            return "\(directory): --pad-to-square is LLaVA-1.5's preprocessing; LLaVA-NeXT resizes and pads into its grid resolution"
        case let .keptPictureNeedsSingleTile(directory):
            return "\(directory): --save-kept draws LLaVA-1.5's single 336-pixel view; LLaVA-NeXT's anyres block is not drawn yet (--json gives keptImageTokens)"
        case let .promptTooLong(tokens, imageTokens, context):
            return "the prompt is \(tokens) tokens (\(imageTokens) of them image tokens), longer than the model's context of \(context)"
        }
    }
}

/// A prompt ready for the model: ids with every `<image>` expanded, and where each image sits.
public struct PreparedPrompt {
    /// Token ids as transformers' LlavaProcessor gives them (`<image>` repeated per image token).
    public let inputIds: [Int]
    public let imageBlocks: [Range<Int>]
    /// (image tokens, textHidden) projected features of each image.
    public let imageFeatures: [Tensor]
    public let visionSeconds: Double
    /// Vision-tower tiles of all images (LLaVA-NeXT runs the tower once per tile).
    public let tiles: Int
    public var imageTokens: Int { imageBlocks.reduce(0) { $0 + $1.count } }
}

/// A llava-hf checkpoint directory ready to answer questions about images: weights, tokenizer
/// and image processor, as transformers' `LlavaForConditionalGeneration` + `LlavaProcessor`.
public final class LlavaPipeline {
    public let directory: URL
    public let loaded: LoadedModel
    public let llava: LlavaModel
    public let tokenizer: Tokenizer
    /// CLIP's preprocessing (LLaVA-1.5; for LLaVA-NeXT the per-tile part of its processor).
    public let imageProcessor: CLIPImageProcessor
    /// LLaVA-NeXT's anyres preprocessing (LlavaNextImageProcessor); nil for LLaVA-1.5.
    public let anyresProcessor: AnyresProcessor?

    /// Loads config.json, the safetensors, tokenizer.json and the image processor's settings
    /// (preprocessor_config.json as llava-hf ships it, or processor_config.json as current
    /// transformers saves it). `padToSquare` is LLaVA's original "pad to a square with the mean
    /// colour" mode. `copiesToFloat32` gives the model mutable fp32 tensors of its own (training).
    /// `maxTiles` keeps only LLaVA-NeXT's grid resolutions of at most that many tiles (the
    /// paper's p5 vs p9: 4 or 8 tiles + the base image).
    public init(directory: URL, padToSquare: Bool = false, copiesToFloat32: Bool = false, maxTiles: Int? = nil) throws {
        self.directory = directory
        let loaded = try LoadedModel.load(directory: directory, copiesToFloat32: copiesToFloat32)
        guard let llava = loaded.llava else { throw PipelineError.notAVisionLanguageModel(directory: directory.path) }
        self.loaded = loaded
        self.llava = llava
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerURL.path) else {
            throw PipelineError.missingFile(directory: directory.path, expected: ["tokenizer.json"])
        }
        tokenizer = try Tokenizer(tokenizerJSON: tokenizerURL)
        let candidates = ["preprocessor_config.json", "processor_config.json"]
        guard let processorURL = candidates.map({ directory.appendingPathComponent($0) })
            .first(where: { FileManager.default.fileExists(atPath: $0.path) })
        else { throw PipelineError.missingFile(directory: directory.path, expected: candidates) }
        if llava.configuration.isNext {
            if padToSquare { throw PipelineError.padToSquareWithAnyres(directory: directory.path) }
            var config = try AnyresProcessorConfig.load(contentsOf: processorURL)
            if let maxTiles {
                let side = config.tileSide
                config.imageGridPinpoints = config.imageGridPinpoints.filter { ($0.height / side) * ($0.width / side) <= maxTiles }
                if config.imageGridPinpoints.isEmpty {
                    throw PipelineError.noGridResolution(file: processorURL.path, maxTiles: maxTiles)
                }
            }
            anyresProcessor = AnyresProcessor(config: config)
            imageProcessor = CLIPImageProcessor(config: config.clip, padsToSquare: padToSquare)
        } else {
            if maxTiles != nil { throw PipelineError.maxTilesWithoutAnyres(directory: directory.path) }
            anyresProcessor = nil
            imageProcessor = CLIPImageProcessor(config: try CLIPImageProcessorConfig.load(contentsOf: processorURL), padsToSquare: padToSquare)
        }
    }

    public var languageModel: LlamaModel { llava.languageModel }

    /// LLaVA-1.5's conversation format for one question about one image.
    public static func conversationPrompt(question: String) -> String {
        "USER: <image>\n\(question) ASSISTANT:"
    }

    /// Token ids of `prompt` with the k-th `<image>` expanded to `imageTokenCounts[k]` copies;
    /// the prompt must hold one placeholder per image and fit the context.
    public func tokenize(_ prompt: String, imageTokenCounts: [Int]) throws -> [Int] {
        let imageToken = llava.configuration.imageTokenIndex
        let ids = tokenizer.encode(prompt)
        let placeholders = ids.filter { $0 == imageToken }.count
        if placeholders == 0 && !imageTokenCounts.isEmpty { throw PipelineError.promptWithoutImage(prompt: prompt) }
        if placeholders != imageTokenCounts.count {
            throw PipelineError.promptWithSeveralImages(count: placeholders, images: imageTokenCounts.count)
        }
        var expanded: [Int] = []
        expanded.reserveCapacity(ids.count + imageTokenCounts.reduce(0, +))
        var image = 0
        for id in ids {
            if id == imageToken {
                expanded.append(contentsOf: repeatElement(imageToken, count: imageTokenCounts[image]))
                image += 1
            } else {
                expanded.append(id)
            }
        }
        let context = languageModel.configuration.maxPositionEmbeddings
        if expanded.count > context {
            throw PipelineError.promptTooLong(tokens: expanded.count, imageTokens: imageTokenCounts.reduce(0, +), context: context)
        }
        return expanded
    }

    /// pixel values (3, side, side) of an image file, as CLIPImageProcessor gives them (LLaVA-1.5).
    public func pixelValues(imageFile: URL) throws -> Tensor {
        let image = try ImageDecoder.decode(contentsOf: imageFile)
        let processed = try imageProcessor.preprocess(image)
        return try tile(processed, file: imageFile)
    }

    /// An image file made ready for the vision tower: CLIPImageProcessor's one tile (LLaVA-1.5),
    /// or LlavaNextImageProcessor's base image and grid tiles with where their features go.
    public func imageInput(imageFile: URL) throws -> ImageInput {
        guard let anyresProcessor else { return ImageInput(tiles: [try pixelValues(imageFile: imageFile)]) }
        let image = try ImageDecoder.decode(contentsOf: imageFile)
        let processed = try anyresProcessor.preprocess(image)
        let perTile = PixelValues.channels * processed.height * processed.width
        let tiles = try (0..<processed.patchCount).map { index in
            try tile(PixelValues(height: processed.height, width: processed.width,
                                 values: Array(processed.values[(index * perTile)..<((index + 1) * perTile)])), file: imageFile)
        }
        let grid = anyresProcessor.featureGrid(
            originalHeight: processed.imageHeight, originalWidth: processed.imageWidth, bestResolution: processed.bestResolution,
            visionPatchSize: llava.configuration.visionConfig.patchSize)
        return ImageInput(tiles: tiles, grid: grid)
    }

    /// Image tokens an image of (height, width) pixels becomes: `tokensPerImage` (LLaVA-1.5) or
    /// LlavaNextProcessor's count for its anyres block; nil when that does not depend on the size.
    public var imageTokenCount: (@Sendable (_ height: Int, _ width: Int) -> Int)? {
        guard let anyresProcessor else { return nil }
        let patchSize = llava.configuration.visionConfig.patchSize, fallback = llava.tokensPerImage
        // Only an empty image makes the count throw, and decoded images are never empty.
        return { height, width in
            (try? anyresProcessor.imageTokenCount(originalHeight: height, originalWidth: width, visionPatchSize: patchSize)) ?? fallback
        }
    }

    /// One processed tile as the tower's (3, side, side) input, checked against its size.
    private func tile(_ processed: PixelValues, file: URL) throws -> Tensor {
        let side = llava.configuration.visionConfig.imageSize
        if processed.height != side || processed.width != side {
            throw PipelineError.imageSizeMismatch(file: file.path, width: processed.width, height: processed.height, expected: side)
        }
        return Tensor(shape: [PixelValues.channels, processed.height, processed.width], values: processed.values)
    }

    /// Tokenizes `prompt`, runs the images through the vision tower and projector.
    public func prepare(prompt: String, imageFiles: [URL]) throws -> PreparedPrompt {
        let images = try imageFiles.map { try imageInput(imageFile: $0) }
        let counts = images.map { llava.imageTokenCount($0) }
        let ids = try tokenize(prompt, imageTokenCounts: counts)
        let clock = ContinuousClock()
        let start = clock.now
        let features = images.map { llava.imageFeatures($0) }
        return PreparedPrompt(
            inputIds: ids, imageBlocks: llava.imageBlocks(in: ids, counts: counts), imageFeatures: features,
            visionSeconds: (clock.now - start).inSeconds, tiles: images.reduce(0) { $0 + $1.tiles.count })
    }

    /// Greedy generation for a prepared prompt with `reducer`.
    public func generate(
        _ prompt: PreparedPrompt, reducer: VisualTokenReducer, maxNewTokens: Int, stopAtEndOfSequence: Bool = true,
        onToken: ((Int) -> Void)? = nil
    ) throws -> GenerationResult {
        try generateGreedy(
            model: languageModel, promptEmbeddings: llava.embed(tokens: prompt.inputIds, imageFeatures: prompt.imageFeatures),
            imageBlocks: prompt.imageBlocks, reducer: reducer, maxNewTokens: maxNewTokens,
            stopAtEndOfSequence: stopAtEndOfSequence, onToken: onToken)
    }

    /// The paper's FLOPs figure and the exact count for this prompt under `reducer`.
    public func flops(_ prompt: PreparedPrompt, reducer: VisualTokenReducer) -> FLOPsReport {
        let vision = llava.configuration.visionConfig
        let featureLayers = llava.configuration.visionFeatureLayers.map { $0 < 0 ? vision.numHiddenLayers + 1 + $0 : $0 }
        let visionShape = VisionShape(
            hidden: vision.hiddenSize, intermediate: vision.intermediateSize, heads: vision.numAttentionHeads,
            layersRun: featureLayers.max() ?? vision.numHiddenLayers, patchSize: vision.patchSize, channels: vision.numChannels,
            patchesPerTile: llava.visionTower.patchCount)
        return FLOPs.prefillReport(
            decoder: DecoderShape(languageModel.configuration), vision: visionShape, tiles: prompt.tiles,
            projectorInput: vision.hiddenSize * featureLayers.count, textTokens: prompt.inputIds.count - prompt.imageTokens,
            imageBlockSizes: prompt.imageBlocks.map(\.count), reducer: reducer)
    }
}

extension DecoderShape {
    public init(_ configuration: LlamaConfiguration) {
        self.init(
            layers: configuration.numHiddenLayers, hidden: configuration.hiddenSize, intermediate: configuration.intermediateSize,
            heads: configuration.numAttentionHeads, keyValueHeads: configuration.numKeyValueHeads, headDim: configuration.headDim,
            vocabulary: configuration.vocabSize)
    }
}
