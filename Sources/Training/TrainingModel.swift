import Foundation
import Models
import TensorCore
import TokenReduction
import Vision

/// Problems of a training sample the model cannot take, named.
public enum TrainingInputError: Error, Equatable, CustomStringConvertible {
    case labelsLengthMismatch(sample: String, tokens: Int, labels: Int)
    case labelOutOfRange(sample: String, position: Int, label: Int, vocabularySize: Int)
    case reductionNotTrainable(String)

    public var description: String {
        switch self {
        case let .labelsLengthMismatch(sample, tokens, labels):
            return "sample \(sample): \(tokens) input ids but \(labels) labels"
        case let .labelOutOfRange(sample, position, label, vocabularySize):
            return "sample \(sample): label \(label) at position \(position) is outside the vocabulary (0..<\(vocabularySize)) and is not -100"
        case let .reductionNotTrainable(message):
            return message
        }
    }
}

/// What one sample's forward and backward gave.
public struct SampleOutcome: Sendable {
    /// Σ of the cross-entropy over the sample's labelled positions (not divided by anything).
    public let lossSum: Double
    public let labelledTokens: Int
    /// Per drop and image block: the kept image tokens (indices 0..<N, increasing); empty when
    /// nothing was dropped.
    public let keptImageTokens: KeptImageTokens
    /// Tokens each decoder layer processed.
    public let tokensPerLayer: [Int]
}

/// A LLaVA model whose parameters are mutable fp32 tensors, with gradient buffers that mirror
/// them, and the forward + backward of one sample (PyramidDrop included) accumulating into them.
public final class TrainingModel {
    public let llava: LlavaModel
    public let layout: LlavaLayout
    /// Every parameter by its checkpoint name; `llava` computes with these very tensors.
    public let parameters: [String: Tensor]
    /// Gradients by the same names, shaped like the parameters.
    public let gradients: [String: Tensor]
    /// The same architecture built over `gradients`: gradient buffers field by field.
    let gradientModel: LlavaModel
    public let trainable: TrainableParts

    /// `llava` must have been loaded with `copiesToFloat32` (its weights are then the tensors of
    /// `parameters`, updated in place by the optimizer).
    public init(llava: LlavaModel, layout: LlavaLayout, parameters: [String: Tensor], trainable: TrainableParts) {
        self.llava = llava
        self.layout = layout
        self.parameters = parameters
        self.trainable = trainable
        let buffers = GradientBuffers(mirroring: parameters)
        gradientModel = type(of: llava).init(configuration: llava.configuration, loader: buffers, layout: layout)
        gradients = buffers.tensors
    }

    /// Names of the parameters that train, sorted: those of the chosen parts that the forward
    /// uses (not the vision layers past the feature layer, nor post_layernorm: PyTorch gives them
    /// no gradient, so AdamW leaves them alone, decay included).
    public var trainableNames: [String] {
        var prefixes: [String] = []
        // LLaVA-NeXT's image_newline trains with the projector, as LLaVA's mm_projector group holds it.
        if trainable.contains(.projector) { prefixes += [layout.projectorPrefix, layout.imageNewlineName] }
        if trainable.contains(.language) { prefixes += [layout.language.modelPrefix, layout.language.lmHeadPrefix] }
        if trainable.contains(.vision) { prefixes.append(layout.visionPrefix) }
        let unused = unusedVisionPrefixes
        return parameters.keys.filter { name in
            prefixes.contains { name.hasPrefix($0) } && !unused.contains { name.hasPrefix($0) }
        }.sorted()
    }

    /// Prefixes of the vision tower's tensors that LLaVA's features never pass through.
    var unusedVisionPrefixes: [String] {
        let deepest = llava.resolvedVisionFeatureLayers.max() ?? 0
        return (deepest..<llava.visionTower.layers.count).map { "\(layout.visionPrefix)encoder.layers.\($0)." }
            + [layout.visionPrefix + "post_layernorm."]
    }

    /// Parameters that get no gradient from a batch without any image (PyTorch leaves their
    /// gradient None, and AdamW skips them for that step).
    public var imageOnlyNames: Set<String> {
        Set(trainableNames.filter {
            $0.hasPrefix(layout.projectorPrefix) || $0.hasPrefix(layout.visionPrefix) || $0 == layout.imageNewlineName
        })
    }

    public func zeroGradients() {
        for tensor in gradients.values { tensor.fill(0) }
    }

    /// Forward and backward of one sample: inputIds(T) with `<image>` already expanded,
    /// labels(T) (-100 where nothing is learned), and its images in order (none for a text-only
    /// sample), one block of image tokens each. Gradients of the loss Σ CE · `lossScale` are
    /// ADDED to `gradients` (call `zeroGradients` once per batch; pass 1 / labelled tokens of the
    /// batch for transformers' mean).
    public func accumulate(
        sample: String, inputIds: [Int], labels: [Int], images: [ImageInput], reducer: VisualTokenReducer, lossScale: Float
    ) throws -> SampleOutcome {
        try check(sample: sample, inputIds: inputIds, labels: labels, reducer: reducer)
        let imagesForward = images.map(imageForward)
        let embeddings = try llava.embed(tokens: inputIds, imageFeatures: imagesForward.map(\.features))  // (T, hidden)
        let imageRows = llava.imageBlocks(in: inputIds, counts: imagesForward.map { $0.features.size(0) })
        let decoder = try decoderForward(embeddings, labels: labels, imageRows: imageRows, reducer: reducer)
        let loss = lossForwardBackward(decoder, lossScale: lossScale)
        let outcome = SampleOutcome(
            lossSum: loss.sum, labelledTokens: loss.rows.count, keptImageTokens: decoder.keptImageTokens, tokensPerLayer: decoder.tokensPerLayer)

        let trainsLanguage = trainable.contains(.language)
        let needsImageGradient = !images.isEmpty && !trainable.isDisjoint(with: [.projector, .vision])
        guard !loss.rows.isEmpty, trainsLanguage || needsImageGradient else { return outcome }
        let dEmbeddings = decoderBackward(decoder, dLastHidden: loss.dHidden, lossRows: loss.rows)  // (T, hidden)
        if trainsLanguage {
            let table = gradientModel.languageModel.embedTokens.floats, width = dEmbeddings.size(1)
            for (row, token) in inputIds.enumerated() where token != llava.imageTokenId {
                let destination = table + token * width, source = dEmbeddings.pointer + row * width
                for i in 0..<width { destination[i] += source[i] }
            }
        }
        if needsImageGradient {
            // `imageBlocks` gives one block per image, in order: image k's features fed block k.
            for (image, block) in imageRows.enumerated() {
                imageBackward(imagesForward[image], image: images[image], dBlock: dEmbeddings.copyRows(block))
            }
        }
        return outcome
    }

    /// Checks the labels against the ids and the vocabulary, and that the reducer can train.
    func check(sample: String, inputIds: [Int], labels: [Int], reducer: VisualTokenReducer) throws {
        let vocabulary = llava.languageModel.vocabularySize
        guard labels.count == inputIds.count else {
            throw TrainingInputError.labelsLengthMismatch(sample: sample, tokens: inputIds.count, labels: labels.count)
        }
        for (position, label) in labels.enumerated() where label != ignoreLabel && !(0..<vocabulary).contains(label) {
            throw TrainingInputError.labelOutOfRange(sample: sample, position: position, label: label, vocabularySize: vocabulary)
        }
        if !reducer.dropLayers.isEmpty && reducer.scoring != .nextLayerQueryKey {
            throw TrainingInputError.reductionNotTrainable("training supports no reduction and PyramidDrop (FastV is an inference baseline)")
        }
    }

    // MARK: - Images

    /// One image's forward: per tile the tower's and projector's activations, and the image's
    /// assembled features (image tokens, hidden).
    struct ImageForward {
        let towers: [CLIPTowerActivations]
        let projections: [ProjectorActivations]
        let features: Tensor
    }

    /// The vision tower and projector tile by tile (the inference forwards, keeping activations),
    /// then the family's assembly of the tiles into the image's features.
    func imageForward(_ image: ImageInput) -> ImageForward {
        var towers: [CLIPTowerActivations] = [], projections: [ProjectorActivations] = [], tileFeatures: [Tensor] = []
        for tile in image.tiles {
            let (states, tower) = llava.visionTower.hiddenStatesKeepingActivations(
                pixelValues: tile, indices: llava.resolvedVisionFeatureLayers)
            let (projected, projection) = llava.projector.forwardKeepingActivations(llava.visionFeatures(hiddenStates: states))
            towers.append(tower!)
            projections.append(projection)
            tileFeatures.append(projected)
        }
        return ImageForward(
            towers: towers, projections: projections, features: llava.assembleImageFeatures(tileFeatures: tileFeatures, image: image))
    }

    /// Backward from one image's block gradient dBlock(image tokens, hidden) through the
    /// assembly, the projector and (when it trains) the tower, into `gradients`.
    func imageBackward(_ forward: ImageForward, image: ImageInput, dBlock: Tensor) {
        let trainsVision = trainable.contains(.vision), trainsProjector = trainable.contains(.projector)
        let dTiles = llava.assembleImageFeaturesBackward(dBlock, image: image, gradients: trainsProjector ? gradientModel : nil)
        for (tile, dProjected) in dTiles.enumerated() {
            let dFeatures = llava.projector.trainingBackward(
                tape: forward.projections[tile], doutput: dProjected,
                gradients: trainsProjector ? gradientModel.projector : nil, needsInputGradient: trainsVision)
            if trainsVision, let dFeatures {
                llava.visionTower.trainingBackward(
                    tape: forward.towers[tile], dstates: visionStateGradients(dFeatures), gradients: gradientModel.visionTower)
            }
        }
    }

    // MARK: - Decoder

    /// The decoder's forward over a sample, with what its backward needs.
    struct DecoderForward {
        /// (T', hidden): the last layer's output for the rows that reached it.
        let hidden: Tensor
        /// Labels of those rows (gathered through each drop).
        let labels: [Int]
        let activations: [DecoderLayerActivations]
        /// After layer l (0-based): the rows kept and how many there were.
        let drops: [Int: (kept: [Int], sourceRows: Int)]
        let keptImageTokens: KeptImageTokens
        let tokensPerLayer: [Int]
    }

    /// The layers from embeddings(T, hidden), dropping image tokens as the reducer says: the
    /// reduction driver of inference, ranking by the answers' query rows (TRAINING.md §4).
    func decoderForward(_ embeddings: Tensor, labels: [Int], imageRows: [Range<Int>], reducer: VisualTokenReducer) throws -> DecoderForward {
        let languageModel = llava.languageModel
        var currentLabels = labels
        var activations: [DecoderLayerActivations] = []
        var drops: [Int: (kept: [Int], sourceRows: Int)] = [:]
        var driver = ReductionDriver(
            reducer: reducer, imageBlocks: imageRows, positions: .sequential(embeddings.size(0)),
            dropsEnabled: !imageRows.isEmpty && !answerQueryRows(labels: labels).isEmpty)
        let hidden = driver.run(
            hidden: embeddings, layerCount: languageModel.layers.count,
            runLayer: { layer, input, positions in
                let (output, layerActivations) = languageModel.forwardKeepingActivations(layer: layer, input: input, positions: positions)
                activations.append(layerActivations)
                return output
            },
            score: { layer, input, positions in
                languageModel.queryAttention(layer: layer, input: input, positions: positions, queryRows: answerQueryRows(labels: currentLabels))
            },
            onDrop: { layer, plan in
                drops[layer] = (plan.keptRows, currentLabels.count)
                currentLabels = plan.keptRows.map { currentLabels[$0] }
            })
        return DecoderForward(
            hidden: hidden, labels: currentLabels, activations: activations, drops: drops,
            keptImageTokens: driver.keptImageTokens, tokensPerLayer: driver.tokensPerLayer)
    }

    /// Backward through the layers (scattering through each drop) from dLastHidden(R, hidden) on
    /// the loss rows; returns the gradient of the embeddings (T, hidden).
    func decoderBackward(_ forward: DecoderForward, dLastHidden: Tensor, lossRows: [Int]) -> Tensor {
        let languageModel = llava.languageModel
        let trainsLanguage = trainable.contains(.language)
        var dHidden = scatterRows(dLastHidden, lossRows, sourceRows: forward.hidden.size(0))  // (T', hidden)
        for layer in languageModel.layers.indices.reversed() {
            if let drop = forward.drops[layer] { dHidden = scatterRows(dHidden, drop.kept, sourceRows: drop.sourceRows) }
            dHidden = languageModel.trainingBackward(
                layer: layer, tape: forward.activations[layer], doutput: dHidden,
                gradients: trainsLanguage ? gradientModel.languageModel.layers[layer] : nil)
        }
        return dHidden
    }

    // MARK: - Loss

    /// Cross-entropy on the positions whose next token is labelled (final norm and lm_head on
    /// those rows only), and its backward to the final hidden rows: dHidden(R, hidden).
    func lossForwardBackward(_ forward: DecoderForward, lossScale: Float) -> (sum: Double, rows: [Int], dHidden: Tensor) {
        let languageModel = llava.languageModel
        let labels = forward.labels
        let lossRows = Array(labels.indices.dropLast().filter { labels[$0 + 1] != ignoreLabel })
        let targets = lossRows.map { labels[$0 + 1] }
        let width = languageModel.hiddenSize, vocabulary = languageModel.vocabularySize, epsilon = languageModel.configuration.rmsNormEps
        let trainsLanguage = trainable.contains(.language)
        let lastHidden = gatherRows(forward.hidden, lossRows)  // (R, hidden)
        let normed = Tensor(shape: lastHidden.shape)  // (R, hidden)
        let logits = Tensor(shape: [lossRows.count, vocabulary])  // (R, vocab)
        let dLogits = Tensor(shape: logits.shape)  // (R, vocab)
        let dNormed = Tensor(shape: normed.shape)  // (R, hidden)
        let dLastHidden = Tensor(shape: normed.shape)  // (R, hidden)
        let gradients = gradientModel.languageModel
        let lossSum = withExtendedLifetime((lastHidden, normed, logits, dLogits, dNormed)) { () -> Double in
            rmsNormForward(normed.pointer, lastHidden.pointer, languageModel.finalNorm.pointer, rows: lossRows.count, dim: width, epsilon: epsilon)
            BLAS.matmulTransposedB(logits.pointer, normed.pointer, languageModel.lmHead.floats, m: lossRows.count, n: vocabulary, k: width)
            let sum = crossEntropyForwardBackward(
                dlogits: dLogits.pointer, logits: logits.pointer, targets: targets, vocab: vocabulary, gradientScale: lossScale)
            guard !lossRows.isEmpty else { return sum }
            linearBackward(
                dinput: dNormed.pointer, dweight: trainsLanguage ? gradients.lmHead.floats : nil, dbias: nil,
                doutput: dLogits.pointer, input: normed.pointer, weight: languageModel.lmHead.floats,
                rows: lossRows.count, inFeatures: width, outFeatures: vocabulary)
            rmsNormBackward(
                dinput: dLastHidden.pointer, dweight: trainsLanguage ? gradients.finalNorm.pointer : nil, doutput: dNormed.pointer,
                input: lastHidden.pointer, weight: languageModel.finalNorm.pointer, rows: lossRows.count, dim: width, epsilon: epsilon)
            return sum
        }
        return (lossSum, lossRows, dLastHidden)
    }

    /// The backward of `visionFeatures(hiddenStates:)`: dfeatures(tokens, visionHidden · layers)
    /// back to one (patches + 1, visionHidden) gradient per selected layer (zero class-token row
    /// with strategy "default").
    func visionStateGradients(_ dFeatures: Tensor) -> [Tensor] {
        let layers = llava.resolvedVisionFeatureLayers.count
        let width = llava.configuration.visionConfig.hiddenSize, first = llava.firstFeatureRow
        let tokens = dFeatures.size(0)
        return (0..<layers).map { layer in
            let states = Tensor(shape: [tokens + first, width])  // (patches + 1, visionHidden)
            for token in 0..<tokens {
                (states.pointer + (token + first) * width).update(from: dFeatures.pointer + token * width * layers + layer * width, count: width)
            }
            return states
        }
    }
}
