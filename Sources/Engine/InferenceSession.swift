import Foundation
import Models
import TensorCore
import Tokenizer
import TokenReduction
import Vision

/// Where an image of a request comes from.
public enum ImageSource: Equatable, Sendable {
    case file(URL)
    /// Encoded PNG or JPEG bytes (a server's base64 `data:` URL); `name` stands for it in errors.
    case bytes(Data, name: String)

    public var name: String {
        switch self {
        case let .file(url): return url.path
        case let .bytes(_, name): return name
        }
    }

    func decode(_ options: ImageDecodingOptions) throws -> RGBImage {
        switch self {
        case let .file(url): return try ImageDecoder.decode(contentsOf: url, options: options)
        case let .bytes(data, name): return try ImageDecoder.decode([UInt8](data), file: name, options: options)
        }
    }
}

/// One message of a chat request: text and images in order (OpenAI's content parts).
public struct ChatMessage: Equatable, Sendable {
    /// `system`: text before the conversation, in place of the template's own system prompt.
    public enum Role: String, Sendable { case system, user, assistant }
    public enum Part: Equatable, Sendable {
        case text(String)
        case image(ImageSource)
    }

    public var role: Role
    public var parts: [Part]

    public init(role: Role, parts: [Part]) {
        self.role = role
        self.parts = parts
    }
}

/// What a request gives the model: chat messages (through the checkpoint's conversation
/// template), a prompt exactly as written with one `<image>` per image, or token ids.
public enum PromptInput: Equatable, Sendable {
    case messages([ChatMessage])
    case raw(String, images: [ImageSource])
    case tokenIds([Int])
}

/// A prompt ready for the model: ids with every `<image>` expanded, and where each image sits.
public struct PreparedPrompt {
    /// Token ids as transformers' processor gives them (`<image>` repeated per image token).
    public let inputIds: [Int]
    public let imageBlocks: [Range<Int>]
    /// (image tokens, hidden) features of each image.
    public let imageFeatures: [Tensor]
    public let images: [ImageSource]
    public let visionSeconds: Double
    /// Vision-tower tiles of all images (LLaVA-NeXT runs the tower once per tile).
    public let tiles: Int
    /// The decoder's positions of `inputIds` (Qwen2-VL's 3-D M-RoPE positions); nil for 0..<tokens.
    public var positions: Positions? = nil
    /// Exact multiply-adds of the vision tower and projector over the images.
    public var visionFLOPs: Double = 0
    public var imageTokens: Int { imageBlocks.reduce(0) { $0 + $1.count } }
}

/// A checkpoint directory loaded for inference: model, tokenizer, image processor and
/// conversation template, as transformers' model + processor. What the command line, the
/// evaluation harness and the server share: prepare a request, then generate from it. Names no
/// model family: the registry chose one when the checkpoint was loaded.
public final class InferenceSession {
    public let directory: URL
    public let loaded: LoadedModel
    /// nil for a text-only checkpoint without tokenizer.json (token ids only).
    public let tokenizer: Tokenizer?
    /// nil for a text-only checkpoint.
    public let imageProcessor: (any ImageProcessing)?
    public let template: ConversationTemplate
    /// How request images are decoded (a server lowers the pixel limit).
    public var imageDecoding = ImageDecodingOptions()

    public var decoder: any LanguageDecoder { loaded.decoder }
    public var visionLanguageModel: (any VisionLanguageModel)? { loaded.visionLanguageModel }

    /// Loads config.json, the safetensors, tokenizer.json and, for a vision-language model, its
    /// image processor (preprocessor_config.json as llava-hf ships it, or processor_config.json
    /// as current transformers saves it). `imageOptions` adjust the processor; `copiesToFloat32`
    /// gives the model mutable fp32 tensors of its own (training); `template` defaults to the one
    /// the checkpoint's chat template calls for (`ConversationTemplate.forCheckpoint`: ChatML, or
    /// llava-hf's LLaVA-1.5 conversation).
    public init(
        directory: URL, imageOptions: ImageProcessingOptions, copiesToFloat32: Bool = false,
        template: ConversationTemplate? = nil
    ) throws {
        self.directory = directory
        loaded = try LoadedModel.load(directory: directory, copiesToFloat32: copiesToFloat32)
        self.template = template ?? .forCheckpoint(directory)
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        let hasTokenizer = FileManager.default.fileExists(atPath: tokenizerURL.path)
        if let model = loaded.visionLanguageModel {
            guard hasTokenizer else { throw PipelineError.missingFile(directory: directory.path, expected: ["tokenizer.json"]) }
            imageProcessor = try model.makeImageProcessor(directory: directory, options: imageOptions)
        } else {
            imageProcessor = nil
        }
        tokenizer = hasTokenizer ? try Tokenizer(tokenizerJSON: tokenizerURL) : nil
        if let tokenizer, let imageToken = loaded.visionLanguageModel?.imageTokenId {
            // A prompt's BOS (or another token the tokenizer adds itself) would become an image block.
            let special = Set(try tokenizer.encode("") + [tokenizer.bosTokenID, tokenizer.eosTokenID].compactMap { $0 })
            if special.contains(imageToken) {
                throw PipelineError.imageTokenIsSpecial(directory: directory.path, token: imageToken)
            }
        }
    }

    /// `init(directory:imageOptions:...)` with the image options spelled out.
    public convenience init(directory: URL, padToSquare: Bool = false, copiesToFloat32: Bool = false, maxTiles: Int? = nil) throws {
        try self.init(directory: directory, imageOptions: ImageProcessingOptions(padToSquare: padToSquare, maxTiles: maxTiles),
                      copiesToFloat32: copiesToFloat32)
    }

    // MARK: - Images

    private func requireVision() throws -> (model: any VisionLanguageModel, processor: any ImageProcessing) {
        guard let model = visionLanguageModel, let imageProcessor else {
            throw PipelineError.notAVisionLanguageModel(directory: directory.path)
        }
        return (model, imageProcessor)
    }

    /// An image made ready for the vision tower by the family's processor.
    public func imageInput(_ source: ImageSource) throws -> ImageInput {
        try requireVision().processor.prepare(try source.decode(imageDecoding), source: source.name)
    }

    public func imageInput(imageFile: URL) throws -> ImageInput { try imageInput(.file(imageFile)) }

    /// The first tile's pixel values (3, side, side): LLaVA-1.5's whole input for the image.
    public func pixelValues(imageFile: URL) throws -> Tensor { try imageInput(imageFile: imageFile).tiles[0] }

    /// Image tokens an image of (height, width) pixels becomes; nil for a text-only checkpoint.
    public var imageTokenCount: (@Sendable (_ height: Int, _ width: Int) -> Int)? {
        guard let imageProcessor else { return nil }
        return { height, width in imageProcessor.imageTokenCount(height: height, width: width) }
    }

    // MARK: - Prompts

    /// Token ids of `prompt` with the k-th image-token id expanded to `imageTokenCounts[k]`
    /// copies; the prompt must hold one placeholder per image and fit the context.
    public func tokenize(_ prompt: String, imageTokenCounts: [Int]) throws -> [Int] {
        guard let tokenizer else { throw PipelineError.noTokenizer(directory: directory.path) }
        let ids = try tokenizer.encode(prompt)
        let imageToken = visionLanguageModel?.imageTokenId
        let placeholders = imageToken.map { token in ids.lazy.filter { $0 == token }.count } ?? 0
        if placeholders == 0 && !imageTokenCounts.isEmpty { throw PipelineError.promptWithoutImage(prompt: prompt) }
        if placeholders != imageTokenCounts.count {
            throw PipelineError.promptWithSeveralImages(count: placeholders, images: imageTokenCounts.count)
        }
        let expanded = imageToken.map { expandImageTokens(ids: ids, imageTokenId: $0, counts: imageTokenCounts).ids } ?? ids
        try checkContext(expanded.count, imageTokens: imageTokenCounts.reduce(0, +))
        return expanded
    }

    private func checkContext(_ tokens: Int, imageTokens: Int) throws {
        if tokens > decoder.contextLength {
            throw PipelineError.promptTooLong(tokens: tokens, imageTokens: imageTokens, context: decoder.contextLength)
        }
    }

    /// The text and images of chat messages under the session's template.
    public func render(_ messages: [ChatMessage]) -> (text: String, images: [ImageSource]) {
        var images: [ImageSource] = []
        let system = messages.filter { $0.role == .system }.flatMap(\.parts).compactMap { part -> String? in
            if case let .text(value) = part { return value }
            return nil
        }
        let template = system.isEmpty ? template : template.replacingSystemPrompt(system.joined(separator: " "))
        let turns = messages.filter { $0.role != .system }.map { message -> ConversationTurn in
            var placeholders = "", text: [String] = []
            for part in message.parts {
                switch part {
                case let .text(value): text.append(value)
                case let .image(source):
                    // The family's chat template: every image first (llava-hf's: each on a line of its own).
                    images.append(source)
                    placeholders += visionLanguageModel?.imagePlaceholder ?? ""
                }
            }
            return ConversationTurn(role: message.role == .user ? .human : .gpt, value: placeholders + text.joined(separator: " "))
        }
        return (template.render(turns, addGenerationPrompt: true).text, images)
    }

    /// Tokenizes the request and runs its images through the vision tower.
    public func prepare(_ input: PromptInput) throws -> PreparedPrompt {
        switch input {
        case let .tokenIds(ids):
            try checkContext(ids.count, imageTokens: 0)
            return PreparedPrompt(inputIds: ids, imageBlocks: [], imageFeatures: [], images: [], visionSeconds: 0, tiles: 0)
        case let .messages(messages):
            let (text, images) = render(messages)
            return try prepare(prompt: text, images: images)
        case let .raw(text, images):
            return try prepare(prompt: text, images: images)
        }
    }

    /// A prompt exactly as written, with one `<image>` per image file.
    public func prepare(prompt: String, imageFiles: [URL]) throws -> PreparedPrompt {
        try prepare(prompt: prompt, images: imageFiles.map { .file($0) })
    }

    private func prepare(prompt: String, images sources: [ImageSource]) throws -> PreparedPrompt {
        guard !sources.isEmpty else {
            return PreparedPrompt(
                inputIds: try tokenize(prompt, imageTokenCounts: []), imageBlocks: [], imageFeatures: [], images: [],
                visionSeconds: 0, tiles: 0)
        }
        let model = try requireVision().model
        let images = try sources.map { try imageInput($0) }
        let counts = images.map { model.imageTokenCount($0) }
        let ids = try tokenize(prompt, imageTokenCounts: counts)
        let clock = ContinuousClock()
        let start = clock.now
        let features = images.map { model.imageFeatures($0) }
        return PreparedPrompt(
            inputIds: ids, imageBlocks: imageBlocks(in: ids, imageTokenId: model.imageTokenId, counts: counts), imageFeatures: features,
            images: sources, visionSeconds: (clock.now - start).inSeconds, tiles: images.reduce(0) { $0 + $1.tiles.count },
            positions: try model.promptPositions(tokens: ids, images: images), visionFLOPs: model.exactVisionFLOPs(images))
    }

    /// Fresh input embeddings (prompt tokens, hidden) of a prepared prompt (the prefill uses
    /// them as its working buffer).
    public func embeddings(_ prompt: PreparedPrompt) throws -> Tensor {
        guard let model = visionLanguageModel else { return try decoder.embed(prompt.inputIds) }
        return try model.embed(tokens: prompt.inputIds, imageFeatures: prompt.imageFeatures)
    }

    // MARK: - Generation

    /// The reducer a request describes, for this decoder and prompt (budgets are solved, and
    /// the reducer must keep some tokens, for its first image block).
    public func reducer(_ request: ReductionRequest, for prompt: PreparedPrompt) throws -> VisualTokenReducer {
        try request.makeReducer(decoder: decoder.shape, imageTokens: prompt.imageBlocks.first?.count, positionAxes: decoder.positionAxes)
    }

    /// Generates from a prepared prompt with `reducer`; see `Engine.generate` for the stream,
    /// stop conditions and cancellation.
    public func generate(
        _ prompt: PreparedPrompt, reducer: VisualTokenReducer, parameters: GenerationParameters,
        cancellation: CancellationFlag? = nil, onEvent: ((GenerationEvent) -> GenerationControl)? = nil
    ) throws -> GenerationResult {
        try Engine.generate(
            decoder: decoder, promptEmbeddings: embeddings(prompt), positions: prompt.positions, imageBlocks: prompt.imageBlocks,
            reducer: reducer, parameters: parameters, tokenizer: tokenizer, cancellation: cancellation, onEvent: onEvent)
    }

    /// Greedy generation of at most `maxNewTokens`.
    public func generate(
        _ prompt: PreparedPrompt, reducer: VisualTokenReducer, maxNewTokens: Int, stopAtEndOfSequence: Bool = true
    ) throws -> GenerationResult {
        try generate(prompt, reducer: reducer, parameters: GenerationParameters(maxNewTokens: maxNewTokens, stopAtEndOfSequence: stopAtEndOfSequence))
    }

    /// The paper's FLOPs figure and the exact count for this prompt under `reducer`.
    public func flops(_ prompt: PreparedPrompt, reducer: VisualTokenReducer) -> FLOPsReport {
        FLOPs.prefillReport(
            decoder: decoder.shape, visionAndProjector: prompt.visionFLOPs, textTokens: prompt.inputIds.count - prompt.imageTokens,
            imageBlockSizes: prompt.imageBlocks.map(\.count), reducer: reducer)
    }

    /// Writes the kept-token picture of the prompt's images (one row each) to `path` as PNG.
    public func saveKeptPicture(images: [ImageSource], keptImageTokens: KeptImageTokens, to path: String) throws {
        let processor = try requireVision().processor
        let rows = try images.enumerated().map { index, source in
            guard let (view, grid) = try processor.keptTokenView(try source.decode(imageDecoding)) else {
                throw PipelineError.keptPictureNeedsSingleTile(directory: directory.path)
            }
            return KeptTokensPicture.render(
                image: view, grid: grid,
                keptPerDrop: keptImageTokens.map { $0.indices.contains(index) ? $0[index] : [] })
        }
        try PNGEncoder.write(KeptTokensPicture.stack(rows), to: URL(fileURLWithPath: path))
    }

    public func saveKeptPicture(imageFiles: [URL], keptImageTokens: KeptImageTokens, to path: String) throws {
        try saveKeptPicture(images: imageFiles.map { .file($0) }, keptImageTokens: keptImageTokens, to: path)
    }

    /// Whether the kept-token picture can be drawn for this checkpoint's images.
    public var drawsKeptPicture: Bool { imageProcessor?.drawsKeptTokens ?? false }
}
