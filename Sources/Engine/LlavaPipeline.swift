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
    /// (tokensPerImage, textHidden) projected features of each image.
    public let imageFeatures: [Tensor]
    public let visionSeconds: Double
    public var imageTokens: Int { imageBlocks.reduce(0) { $0 + $1.count } }
}

/// A llava-hf checkpoint directory ready to answer questions about images: weights, tokenizer
/// and image processor, as transformers' `LlavaForConditionalGeneration` + `LlavaProcessor`.
public final class LlavaPipeline {
    public let directory: URL
    public let loaded: LoadedModel
    public let llava: LlavaModel
    public let tokenizer: Tokenizer
    public let imageProcessor: CLIPImageProcessor

    /// Loads config.json, the safetensors, tokenizer.json and the image processor's settings
    /// (preprocessor_config.json as llava-hf ships it, or processor_config.json as current
    /// transformers saves it). `padToSquare` is LLaVA's original "pad to a square with the mean
    /// colour" mode. `copiesToFloat32` gives the model mutable fp32 tensors of its own (training).
    public init(directory: URL, padToSquare: Bool = false, copiesToFloat32: Bool = false) throws {
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
        imageProcessor = CLIPImageProcessor(config: try CLIPImageProcessorConfig.load(contentsOf: processorURL), padsToSquare: padToSquare)
    }

    public var languageModel: LlamaModel { llava.languageModel }

    /// LLaVA-1.5's conversation format for one question about one image.
    public static func conversationPrompt(question: String) -> String {
        "USER: <image>\n\(question) ASSISTANT:"
    }

    /// Token ids of `prompt` with each `<image>` expanded to the image's token count; the prompt
    /// must hold exactly `imageCount` placeholders and fit the context.
    public func tokenize(_ prompt: String, imageCount: Int) throws -> [Int] {
        let imageToken = llava.configuration.imageTokenIndex
        let ids = tokenizer.encode(prompt)
        let placeholders = ids.filter { $0 == imageToken }.count
        if placeholders == 0 && imageCount > 0 { throw PipelineError.promptWithoutImage(prompt: prompt) }
        if placeholders != imageCount { throw PipelineError.promptWithSeveralImages(count: placeholders, images: imageCount) }
        var expanded: [Int] = []
        expanded.reserveCapacity(ids.count + imageCount * llava.tokensPerImage)
        for id in ids {
            if id == imageToken {
                expanded.append(contentsOf: repeatElement(imageToken, count: llava.tokensPerImage))
            } else {
                expanded.append(id)
            }
        }
        let context = languageModel.configuration.maxPositionEmbeddings
        if expanded.count > context {
            throw PipelineError.promptTooLong(tokens: expanded.count, imageTokens: imageCount * llava.tokensPerImage, context: context)
        }
        return expanded
    }

    /// pixel values (3, side, side) of an image file, as CLIPImageProcessor gives them.
    public func pixelValues(imageFile: URL) throws -> Tensor {
        let image = try ImageDecoder.decode(contentsOf: imageFile)
        let processed = try imageProcessor.preprocess(image)
        let side = llava.configuration.visionConfig.imageSize
        if processed.height != side || processed.width != side {
            throw PipelineError.imageSizeMismatch(file: imageFile.path, width: processed.width, height: processed.height, expected: side)
        }
        return Tensor(shape: [PixelValues.channels, processed.height, processed.width], values: processed.values)
    }

    /// Tokenizes `prompt`, runs the images through the vision tower and projector.
    public func prepare(prompt: String, imageFiles: [URL]) throws -> PreparedPrompt {
        let ids = try tokenize(prompt, imageCount: imageFiles.count)
        let pixels = try imageFiles.map { try pixelValues(imageFile: $0) }
        let clock = ContinuousClock()
        let start = clock.now
        let features = pixels.map { llava.imageFeatures(pixelValues: $0) }
        return PreparedPrompt(
            inputIds: ids, imageBlocks: llava.imageBlocks(in: ids), imageFeatures: features, visionSeconds: (clock.now - start).inSeconds)
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
            decoder: DecoderShape(languageModel.configuration), vision: visionShape, tiles: prompt.imageFeatures.count,
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
