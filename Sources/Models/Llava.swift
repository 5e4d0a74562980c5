import Foundation
import SafeTensors
import TensorCore

// MARK: - Weight names

/// Where a LLaVA checkpoint keeps its three parts.
public struct LlavaLayout: Equatable, Sendable {
    public let language: LanguageModelLayout
    public let visionPrefix: String
    public let projectorPrefix: String

    /// llava-hf's hub files: `vision_tower.vision_model.*`.
    public static let hub = LlavaLayout(language: .llavaHub, visionPrefix: "vision_tower.vision_model.", projectorPrefix: "multi_modal_projector.")
    /// transformers 5's save_pretrained: `vision_tower.*`.
    public static let saved = LlavaLayout(language: .llavaHub, visionPrefix: "vision_tower.", projectorPrefix: "multi_modal_projector.")
    /// transformers 4.5x's save_pretrained: everything under `model.`.
    public static let nested = LlavaLayout(language: .llavaNested, visionPrefix: "model.vision_tower.vision_model.", projectorPrefix: "model.multi_modal_projector.")

    public static func detect(in checkpoint: Checkpoint) -> LlavaLayout {
        [hub, saved, nested].first { checkpoint.contains($0.visionPrefix + "embeddings.class_embedding") } ?? hub
    }

    /// Every tensor under these prefixes must be used.
    public var ownedPrefixes: [String] {
        [language.modelPrefix, language.lmHeadPrefix, visionPrefix, projectorPrefix]
    }
}

// MARK: - Model

/// Errors in matching images to the prompt's image tokens.
public enum LlavaInputError: Error, Equatable, CustomStringConvertible {
    case imageTokenCountMismatch(imageTokensInPrompt: Int, images: Int, tokensPerImage: Int)

    public var description: String {
        switch self {
        case let .imageTokenCountMismatch(inPrompt, images, perImage):
            return "the prompt holds \(inPrompt) image tokens but \(images) image(s) give \(images * perImage) features (\(perImage) each)"
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

    /// The rows of each image's block of image tokens in `tokens`, in order (images that sit
    /// side by side are told apart by their length, tokensPerImage).
    public func imageBlocks(in tokens: [Int]) -> [Range<Int>] {
        var blocks: [Range<Int>] = []
        var index = 0
        while index < tokens.count {
            guard tokens[index] == configuration.imageTokenIndex else { index += 1; continue }
            var end = index
            while end < tokens.count && tokens[end] == configuration.imageTokenIndex { end += 1 }
            var start = index
            while start < end {
                let blockEnd = min(end, start + tokensPerImage)
                blocks.append(start..<blockEnd)
                start = blockEnd
            }
            index = end
        }
        return blocks
    }

    /// Input embeddings (tokens.count, textHidden): token embeddings, with the image-token rows
    /// replaced by the images' features in order.
    public func embed(tokens: [Int], imageFeatures: [Tensor]) throws -> Tensor {
        let imageToken = configuration.imageTokenIndex
        let imagePositions = tokens.indices.filter { tokens[$0] == imageToken }
        let perImage = tokensPerImage
        if imagePositions.count != imageFeatures.count * perImage {
            throw LlavaInputError.imageTokenCountMismatch(
                imageTokensInPrompt: imagePositions.count, images: imageFeatures.count, tokensPerImage: perImage)
        }
        let embeddings = try languageModel.embed(tokens)
        let width = languageModel.hiddenSize
        for (index, position) in imagePositions.enumerated() {
            let features = imageFeatures[index / perImage]
            (embeddings.pointer + position * width).update(from: features.pointer + (index % perImage) * width, count: width)
        }
        return embeddings
    }
}
