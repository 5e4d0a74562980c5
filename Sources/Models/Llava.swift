import Foundation
import SafeTensors
import TensorCore
import Vision

// MARK: - Weight names

/// Where a LLaVA checkpoint keeps its three parts.
public struct LlavaLayout: Equatable, Sendable {
    public let language: LanguageModelLayout
    public let visionPrefix: String
    public let projectorPrefix: String
    /// LLaVA-NeXT's (hidden,) newline embedding.
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

/// One image made ready for the vision tower: its tiles' pixel values, each (channels, side, side)
/// (one tile for LLaVA-1.5; LLaVA-NeXT's base image then the grid's tiles row by row), and for
/// LLaVA-NeXT where the tiles' features go (`grid`).
public struct ImageInput {
    public let tiles: [Tensor]
    public let grid: AnyresFeatureGrid?

    public init(tiles: [Tensor], grid: AnyresFeatureGrid? = nil) {
        self.tiles = tiles
        self.grid = grid
    }
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

/// `LlavaForConditionalGeneration`: the CLIP vision tower, the projector, and the LLaMA decoder
/// that sees projected image features in place of the prompt's image tokens.
public final class LlavaModel {
    public let configuration: LlavaConfiguration
    public let visionTower: CLIPVisionTower
    public let projector: MultiModalProjector
    public let languageModel: LlamaModel
    /// LLaVA-NeXT's (textHidden,) embedding appended after every row of tile features; nil for LLaVA-1.5.
    public let imageNewline: Tensor?

    /// Image tokens one image becomes: every patch, plus the class token with strategy "full".
    public var tokensPerImage: Int {
        visionTower.patchCount + (configuration.visionFeatureSelectStrategy == "full" ? 1 : 0)
    }

    public init(configuration: LlavaConfiguration, loader: WeightSource, layout: LlavaLayout) {
        self.configuration = configuration
        visionTower = CLIPVisionTower(configuration: configuration.visionConfig, loader: loader, prefix: layout.visionPrefix)
        projector = MultiModalProjector(
            loader: loader, prefix: layout.projectorPrefix,
            inFeatures: configuration.visionConfig.hiddenSize * configuration.visionFeatureLayers.count,
            outFeatures: configuration.textConfig.hiddenSize, bias: configuration.multimodalProjectorBias,
            activation: configuration.projectorHiddenAct)
        languageModel = LlamaModel(configuration: configuration.textConfig, loader: loader, layout: layout.language)
        imageNewline = configuration.isNext
            ? loader.take(layout.imageNewlineName, shape: [configuration.textConfig.hiddenSize]) : nil
    }

    /// The vision tower's selected features (tokensPerImage, visionHidden · layers), before the projector.
    public func visionFeatures(pixelValues: Tensor) -> Tensor {
        visionFeatures(hiddenStates: visionTower.hiddenStates(pixelValues: pixelValues, indices: configuration.visionFeatureLayers))
    }

    /// `vision_feature_layer` resolved to indices of hidden_states (0 = embeddings, k = after layer k).
    public var resolvedVisionFeatureLayers: [Int] {
        configuration.visionFeatureLayers.map { $0 < 0 ? visionTower.layers.count + 1 + $0 : $0 }
    }

    /// Row of the tower's states where the selected features start (1 with strategy "default": no class token).
    public var firstFeatureRow: Int { configuration.visionFeatureSelectStrategy == "full" ? 0 : 1 }

    /// The selected features (tokensPerImage, visionHidden · layers) of the tower's hidden states
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

    /// Projected image features (tokensPerImage, textHidden) of pixelValues(channels, side, side).
    public func imageFeatures(pixelValues: Tensor) -> Tensor {
        projector(visionFeatures(pixelValues: pixelValues))
    }

    /// The features (image tokens, textHidden) that stand in for one image's tokens: its single
    /// tile's (LLaVA-1.5), or LLaVA-NeXT's assembly of every tile's.
    public func imageFeatures(_ image: ImageInput) -> Tensor {
        let tiles = image.tiles.map { imageFeatures(pixelValues: $0) }
        guard let grid = image.grid else { return tiles[0] }
        return nextImageFeatures(tileFeatures: tiles, grid: grid)
    }

    /// Image tokens one image becomes: `tokensPerImage` (LLaVA-1.5), or LLaVA-NeXT's base image,
    /// the kept part of the grid and one newline per kept row.
    public func imageTokenCount(_ image: ImageInput) -> Int {
        guard let grid = image.grid else { return tokensPerImage }
        return tokensPerImage + (image.tiles.count > 1 ? grid.keptRows.count * (grid.keptColumns.count + 1) : 1)
    }

    /// The rows of each image's block of image tokens in `tokens`, in order. Images that sit side
    /// by side are told apart by their lengths: `tokensPerImage[k]` for image k (LLaVA-NeXT's
    /// vary with the image's size), or `tokensPerImage` for all when nil (LLaVA-1.5).
    public func imageBlocks(in tokens: [Int], counts: [Int]? = nil) -> [Range<Int>] {
        var blocks: [Range<Int>] = []
        var index = 0
        while index < tokens.count {
            guard tokens[index] == configuration.imageTokenIndex else { index += 1; continue }
            var end = index
            while end < tokens.count && tokens[end] == configuration.imageTokenIndex { end += 1 }
            var start = index
            while start < end {
                let length = counts.map { blocks.count < $0.count ? $0[blocks.count] : end - start } ?? tokensPerImage
                let blockEnd = min(end, start + max(length, 1))
                blocks.append(start..<blockEnd)
                start = blockEnd
            }
            index = end
        }
        return blocks
    }

    /// Input embeddings (tokens.count, textHidden): token embeddings, with the image-token rows
    /// replaced by the rows of the images' features (each (tokens of that image, textHidden)) in
    /// order, as transformers' `masked_scatter` does.
    public func embed(tokens: [Int], imageFeatures: [Tensor]) throws -> Tensor {
        let imageToken = configuration.imageTokenIndex
        let imagePositions = tokens.indices.filter { tokens[$0] == imageToken }
        let featureRows = imageFeatures.reduce(0) { $0 + $1.size(0) }
        if imagePositions.count != featureRows {
            throw LlavaInputError.imageTokenCountMismatch(
                imageTokensInPrompt: imagePositions.count, images: imageFeatures.count, featureRows: featureRows)
        }
        let embeddings = try languageModel.embed(tokens)
        let width = languageModel.hiddenSize
        var positions = imagePositions.makeIterator()
        for features in imageFeatures {
            for row in 0..<features.size(0) {
                (embeddings.pointer + positions.next()! * width).update(from: features.pointer + row * width, count: width)
            }
        }
        return embeddings
    }

    // MARK: - LLaVA-NeXT

    /// LLaVA-NeXT's features of one image (`pack_image_features`): from the projected features of
    /// its tiles (base image first, then the grid's tiles row by row, each (patches, textHidden)),
    /// the base image's rows, then the tiles laid side by side as one map, cut to `grid`'s kept
    /// rows and columns, with `image_newline` after every row. (N, textHidden).
    public func nextImageFeatures(tileFeatures: [Tensor], grid: AnyresFeatureGrid) -> Tensor {
        let width = languageModel.hiddenSize
        let base = tileFeatures[0]
        let side = grid.patchesPerTileSide
        let kept = grid.keptRows.count * (grid.keptColumns.count + 1)
        let hasGrid = tileFeatures.count > 1
        let output = Tensor(shape: [base.size(0) + (hasGrid ? kept : 1), width])  // (N, textHidden)
        output.pointer.update(from: base.pointer, count: base.count)
        var row = base.size(0)
        func append(_ source: UnsafePointer<Float>) {
            (output.pointer + row * width).update(from: source, count: width)
            row += 1
        }
        guard hasGrid else {
            // transformers appends one newline to a lone base image.
            if let imageNewline { append(imageNewline.pointer) }
            return output
        }
        for y in grid.keptRows {
            for x in grid.keptColumns {
                let tile = 1 + (y / side.height) * grid.tileColumns + x / side.width
                let patch = (y % side.height) * side.width + x % side.width
                append(tileFeatures[tile].pointer + patch * width)
            }
            if let imageNewline { append(imageNewline.pointer) }
        }
        return output
    }
}
