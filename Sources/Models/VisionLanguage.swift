import Foundation
import TensorCore
import TokenReduction
import Vision

// MARK: - Images

/// One image made ready for the vision tower: its tiles' pixel values, each (channels, side, side)
/// (one tile for LLaVA-1.5; LLaVA-NeXT's base image then the grid's tiles row by row), and for
/// an anyres family where the tiles' features go (`grid`). A dynamic-resolution family (Qwen2-VL)
/// has one "tile" of patch rows (patches, channels·frames·patch·patch) on `patchGrid`.
public struct ImageInput {
    public let tiles: [Tensor]
    public let grid: AnyresFeatureGrid?
    public let patchGrid: MultimodalRotaryPositions.ImageGrid?

    public init(tiles: [Tensor], grid: AnyresFeatureGrid? = nil, patchGrid: MultimodalRotaryPositions.ImageGrid? = nil) {
        self.tiles = tiles
        self.grid = grid
        self.patchGrid = patchGrid
    }
}

/// Rows × columns of image tokens over a picture, row-major (LLaVA-1.5's 24 × 24 patches,
/// Qwen2-VL's merged patches at the image's own aspect ratio).
public struct TokenGrid: Equatable, Sendable {
    public let rows: Int, columns: Int
    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
    }
    public static func square(_ side: Int) -> TokenGrid { TokenGrid(rows: side, columns: side) }
}

/// How a request wants images preprocessed, beyond what the checkpoint's processor config says.
public struct ImageProcessingOptions: Equatable, Sendable {
    /// LLaVA's original "pad to a square with the mean colour" before CLIP's resize.
    public var padToSquare = false
    /// Anyres families: use only grid resolutions of at most this many tiles (besides the base image).
    public var maxTiles: Int? = nil

    public init(padToSquare: Bool = false, maxTiles: Int? = nil) {
        self.padToSquare = padToSquare
        self.maxTiles = maxTiles
    }
}

/// A family's image processor (transformers' `*ImageProcessor`): a decoded image to the tiles
/// its vision tower takes, and how many image tokens the image becomes.
public protocol ImageProcessing: Sendable {
    /// `image` made ready for the vision tower; `source` names the image in errors.
    func prepare(_ image: RGBImage, source: String) throws -> ImageInput
    /// Image tokens an image of (height, width) pixels becomes.
    func imageTokenCount(height: Int, width: Int) -> Int
    /// The image as the model sees it (resized and cropped) with the grid its tokens lie on, for
    /// the kept-token picture; nil where the family's image block is not drawn as one grid.
    func keptTokenView(_ image: RGBImage) throws -> (view: RGBImage, grid: TokenGrid)?
    /// Whether `keptTokenView` gives a view.
    var drawsKeptTokens: Bool { get }
}

// MARK: - Models

/// What the engine needs of a vision-language family (MLXVLM's `VLMModel`): its decoder, the id
/// that marks image tokens in a prompt, an image's features and token count, and its processor.
/// Prefill, reduction, decoding, the session, the CLI and the server speak only to this.
public protocol VisionLanguageModel: AnyObject {
    var decoder: any LanguageDecoder { get }
    /// The id each image token has in the prompt (`<image>` repeated once per token).
    var imageTokenId: Int { get }
    /// The features (image tokens, decoder hidden) that stand in for one image's tokens.
    func imageFeatures(_ image: ImageInput) -> Tensor
    /// Image tokens `image` becomes (the rows of `imageFeatures(image)`).
    func imageTokenCount(_ image: ImageInput) -> Int
    /// Exact multiply-adds of the vision tower and projector for a prompt's images.
    func exactVisionFLOPs(_ images: [ImageInput]) -> Double
    /// The processor that the checkpoint in `directory` describes, with `options`.
    func makeImageProcessor(directory: URL, options: ImageProcessingOptions) throws -> any ImageProcessing
    /// What a chat template writes for one image (its image token once, expanded per token later).
    var imagePlaceholder: String { get }
    /// The decoder's positions for a prompt of `tokens` (image tokens expanded) holding `images`;
    /// nil where they are 0..<tokens (1-D RoPE).
    func promptPositions(tokens: [Int], images: [ImageInput]) throws -> Positions?
}

extension VisionLanguageModel {
    /// llava-hf's chat template: each image first, on a line of its own.
    public var imagePlaceholder: String { "<image>\n" }
    public func promptPositions(tokens: [Int], images: [ImageInput]) throws -> Positions? { nil }
}

/// Errors in matching images to the prompt's image tokens.
public enum LlavaInputError: Error, Equatable, CustomStringConvertible {
    case imageTokenCountMismatch(imageTokensInPrompt: Int, images: Int, featureRows: Int)

    public var description: String {
        switch self {
        case let .imageTokenCountMismatch(inPrompt, images, featureRows):
            return "the prompt holds \(inPrompt) image tokens but \(images) image(s) give \(featureRows) features"
        }
    }
}

extension VisionLanguageModel {
    /// Input embeddings (tokens.count, hidden): token embeddings, with the image-token rows
    /// replaced by the rows of the images' features (each (tokens of that image, hidden)) in
    /// order, as transformers' `masked_scatter` does.
    public func embed(tokens: [Int], imageFeatures: [Tensor]) throws -> Tensor {
        let imagePositions = tokens.indices.filter { tokens[$0] == imageTokenId }
        let featureRows = imageFeatures.reduce(0) { $0 + $1.size(0) }
        if imagePositions.count != featureRows {
            throw LlavaInputError.imageTokenCountMismatch(
                imageTokensInPrompt: imagePositions.count, images: imageFeatures.count, featureRows: featureRows)
        }
        let embeddings = try decoder.embed(tokens)  // (tokens, hidden)
        let width = embeddings.size(1)
        var positions = imagePositions.makeIterator()
        for features in imageFeatures {
            for row in 0..<features.size(0) {
                (embeddings.pointer + positions.next()! * width).update(from: features.pointer + row * width, count: width)
            }
        }
        return embeddings
    }
}

/// The rows of each image's block of `imageTokenId`s in `tokens`, in order. Images that sit side
/// by side are told apart by their lengths: `counts[k]` for image k, `defaultCount` past them.
public func imageBlocks(in tokens: [Int], imageTokenId: Int, counts: [Int], defaultCount: Int? = nil) -> [Range<Int>] {
    var blocks: [Range<Int>] = []
    var index = 0
    while index < tokens.count {
        guard tokens[index] == imageTokenId else { index += 1; continue }
        var end = index
        while end < tokens.count && tokens[end] == imageTokenId { end += 1 }
        var start = index
        while start < end {
            let length = blocks.count < counts.count ? counts[blocks.count] : defaultCount ?? end - start
            let blockEnd = min(end, start + max(length, 1))
            blocks.append(start..<blockEnd)
            start = blockEnd
        }
        index = end
    }
    return blocks
}

/// `ids` with the k-th `imageTokenId` repeated `counts[k]` times, as a processor expands `<image>`,
/// `labels` (when given) alongside with `ignoredLabel` for the copies, and where each image's
/// block sits. Placeholders past `counts` stay single.
public func expandImageTokens(
    ids: [Int], labels: [Int]? = nil, imageTokenId: Int, counts: [Int], ignoredLabel: Int = -100
) -> (ids: [Int], labels: [Int]?, blocks: [Range<Int>]) {
    precondition(labels == nil || labels!.count == ids.count, "ids (\(ids.count)) and labels (\(labels!.count)) differ in length")
    var expandedIds: [Int] = [], expandedLabels: [Int] = [], blocks: [Range<Int>] = []
    expandedIds.reserveCapacity(ids.count + counts.reduce(0, +))
    for (index, id) in ids.enumerated() {
        guard id == imageTokenId && blocks.count < counts.count else {
            expandedIds.append(id)
            if let labels { expandedLabels.append(labels[index]) }
            continue
        }
        let copies = counts[blocks.count]
        blocks.append(expandedIds.count..<(expandedIds.count + copies))
        expandedIds.append(contentsOf: repeatElement(id, count: copies))
        expandedLabels.append(contentsOf: repeatElement(ignoredLabel, count: labels == nil ? 0 : copies))
    }
    return (expandedIds, labels == nil ? nil : expandedLabels, blocks)
}
