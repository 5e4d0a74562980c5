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
    public let keptImageTokens: [[[Int]]]
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
        gradientModel = LlavaModel(configuration: llava.configuration, loader: buffers, layout: layout)
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
    /// sample): each one tile (LLaVA-1.5) or LLaVA-NeXT's tiles and grid, one block of image tokens each.
    /// Gradients of the loss Σ CE · `lossScale` are ADDED to `gradients` (call `zeroGradients`
    /// once per batch; pass 1 / labelled tokens of the batch for transformers' mean).
    public func accumulate(
        sample: String, inputIds: [Int], labels: [Int], images: [ImageInput], reducer: VisualTokenReducer, lossScale: Float
    ) throws -> SampleOutcome {
        let languageModel = llava.languageModel
        let vocabulary = languageModel.vocabularySize
        guard labels.count == inputIds.count else {
            throw TrainingInputError.labelsLengthMismatch(sample: sample, tokens: inputIds.count, labels: labels.count)
        }
        for (position, label) in labels.enumerated() where label != ignoreLabel && !(0..<vocabulary).contains(label) {
            throw TrainingInputError.labelOutOfRange(sample: sample, position: position, label: label, vocabularySize: vocabulary)
        }
        if !reducer.dropLayers.isEmpty && reducer.scoring != .nextLayerQueryKey {
            throw TrainingInputError.reductionNotTrainable("training supports --reduction none and pdrop (FastV is an inference baseline)")
        }

        // Vision tower and projector, tile by tile; LLaVA-NeXT then packs each image's tiles.
        var visionTapes: [[VisionTape]] = [], projectorTapes: [[ProjectorTape]] = []  // [image][tile]
        var imageFeatures: [Tensor] = []
        for image in images {
            var tileFeatures: [Tensor] = []
            var visions: [VisionTape] = [], projections: [ProjectorTape] = []
            for tile in image.tiles {
                let (states, tape) = llava.visionTower.trainingForward(pixelValues: tile, featureIndices: llava.resolvedVisionFeatureLayers)
                let (projected, projection) = llava.projector.trainingForward(llava.visionFeatures(hiddenStates: states))
                visions.append(tape)
                projections.append(projection)
                tileFeatures.append(projected)
            }
            visionTapes.append(visions)
            projectorTapes.append(projections)
            imageFeatures.append(image.grid.map { llava.nextImageFeatures(tileFeatures: tileFeatures, grid: $0) } ?? tileFeatures[0])
        }
        var hidden = try llava.embed(tokens: inputIds, imageFeatures: imageFeatures)  // (T, hidden)
        let imageRows = llava.imageBlocks(in: inputIds, counts: imageFeatures.map { $0.size(0) })

        // Decoder, dropping image tokens after the schedule's layers.
        var positions = Array(inputIds.indices)
        var currentLabels = labels
        var blocks = imageRows.map { ImageBlockState(rows: $0) }
        let drops = blocks.isEmpty || answerQueryRows(labels: labels).isEmpty ? [] : reducer.dropLayers
        var tapes: [DecoderLayerActivations] = []
        var keptRowsAfterLayer: [Int: (kept: [Int], sourceRows: Int)] = [:]
        var keptImageTokens: [[[Int]]] = []
        for layer in languageModel.layers.indices {
            let (output, tape) = languageModel.forwardKeepingActivations(layer: layer, input: hidden, positions: positions)
            tapes.append(tape)
            hidden = output
            guard let drop = drops.firstIndex(of: layer + 1) else { continue }
            let scores = languageModel.queryAttention(
                layer: layer + 1, input: hidden, positions: positions, queryRows: answerQueryRows(labels: currentLabels))
            let plan = DropPlan(scores: scores, blocks: blocks, reducer: reducer, drop: drop)
            keptRowsAfterLayer[layer] = (plan.keptRows, hidden.size(0))
            keptImageTokens.append(plan.keptImageTokens)
            hidden = gatherRows(hidden, plan.keptRows)
            currentLabels = plan.keptRows.map { currentLabels[$0] }
            positions = plan.positions(from: positions, mode: reducer.positionMode)
            blocks = plan.blocks
        }

        // Loss on the positions whose next token is labelled: final norm and lm_head on those rows only.
        let lossRows = currentLabels.indices.dropLast().filter { currentLabels[$0 + 1] != ignoreLabel }
        let targets = lossRows.map { currentLabels[$0 + 1] }
        let width = languageModel.hiddenSize
        let lastHidden = gatherRows(hidden, Array(lossRows))  // (R, hidden)
        let normed = Tensor(shape: lastHidden.shape)  // (R, hidden)
        rmsNormForward(normed.pointer, lastHidden.pointer, languageModel.finalNorm.pointer, rows: lossRows.count, dim: width,
                       epsilon: languageModel.configuration.rmsNormEps)
        let logits = Tensor(shape: [lossRows.count, vocabulary])  // (R, vocab)
        BLAS.matmulTransposedB(logits.pointer, normed.pointer, languageModel.lmHead.floats, m: lossRows.count, n: vocabulary, k: width)
        let dLogits = Tensor(shape: logits.shape)  // (R, vocab)
        let lossSum = crossEntropyForwardBackward(
            dlogits: dLogits.pointer, logits: logits.pointer, targets: targets, vocab: vocabulary, gradientScale: lossScale)
        let outcome = SampleOutcome(
            lossSum: lossSum, labelledTokens: lossRows.count, keptImageTokens: keptImageTokens, tokensPerLayer: tapes.map { $0.input.size(0) })

        let trainsLanguage = trainable.contains(.language)
        let needsImageGradient = !images.isEmpty && !trainable.isDisjoint(with: [.projector, .vision])
        guard !lossRows.isEmpty, trainsLanguage || needsImageGradient else { return outcome }

        // Backward: lm_head, final norm, the layers (scattering through each drop), embeddings.
        let gradientLanguage = gradientModel.languageModel
        let dNormed = Tensor(shape: normed.shape)  // (R, hidden)
        linearBackward(
            dinput: dNormed.pointer, dweight: trainsLanguage ? gradientLanguage.lmHead.floats : nil, dbias: nil,
            doutput: dLogits.pointer, input: normed.pointer, weight: languageModel.lmHead.floats,
            rows: lossRows.count, inFeatures: width, outFeatures: vocabulary)
        let dLastHidden = Tensor(shape: normed.shape)  // (R, hidden)
        rmsNormBackward(
            dinput: dLastHidden.pointer, dweight: trainsLanguage ? gradientLanguage.finalNorm.pointer : nil, doutput: dNormed.pointer,
            input: lastHidden.pointer, weight: languageModel.finalNorm.pointer, rows: lossRows.count, dim: width,
            epsilon: languageModel.configuration.rmsNormEps)
        var dHidden = scatterRows(dLastHidden, Array(lossRows), sourceRows: hidden.size(0))  // (T', hidden)
        for layer in languageModel.layers.indices.reversed() {
            if let drop = keptRowsAfterLayer[layer] { dHidden = scatterRows(dHidden, drop.kept, sourceRows: drop.sourceRows) }
            dHidden = languageModel.trainingBackward(
                layer: layer, tape: tapes[layer], doutput: dHidden, gradients: trainsLanguage ? gradientLanguage.layers[layer] : nil)
        }
        if trainsLanguage {
            let table = gradientLanguage.embedTokens.floats
            let imageToken = llava.configuration.imageTokenIndex
            for (row, token) in inputIds.enumerated() where token != imageToken {
                let destination = table + token * width, source = dHidden.pointer + row * width
                for i in 0..<width { destination[i] += source[i] }
            }
        }
        if needsImageGradient {
            // `imageBlocks` gives one block per image, in order: image k's features fed block k.
            let trainsVision = trainable.contains(.vision), trainsProjector = trainable.contains(.projector)
            for (image, block) in imageRows.enumerated() {
                let dBlock = dHidden.copyRows(block)  // (image tokens, hidden)
                var dTiles = [dBlock]
                if let grid = images[image].grid {
                    dTiles = nextImageFeaturesBackward(
                        dBlock, grid: grid, tileCount: images[image].tiles.count,
                        dImageNewline: trainsProjector ? gradientModel.imageNewline : nil)
                }
                for (tile, dProjected) in dTiles.enumerated() {
                    let dFeatures = llava.projector.trainingBackward(
                        tape: projectorTapes[image][tile], doutput: dProjected,
                        gradients: trainsProjector ? gradientModel.projector : nil, needsInputGradient: trainsVision)
                    if trainsVision, let dFeatures {
                        llava.visionTower.trainingBackward(
                            tape: visionTapes[image][tile], dstates: visionStateGradients(dFeatures), gradients: gradientModel.visionTower)
                    }
                }
            }
        }
        withExtendedLifetime((normed, logits, dLogits, dNormed, dLastHidden, lastHidden)) {}
        return outcome
    }

    /// The backward of `LlavaModel.nextImageFeatures`: dblock(N, hidden) back to each tile's
    /// (patches, hidden) gradient (zero where unpadding cut the tile), the newline rows summed
    /// into `dImageNewline`(hidden).
    func nextImageFeaturesBackward(_ dBlock: Tensor, grid: AnyresFeatureGrid, tileCount: Int, dImageNewline: Tensor?) -> [Tensor] {
        let width = dBlock.size(1), side = grid.patchesPerTileSide
        let patches = side.height * side.width
        let dTiles = (0..<tileCount).map { _ in Tensor(shape: [patches, width]) }  // each (patches, hidden)
        dTiles[0].pointer.update(from: dBlock.pointer, count: patches * width)
        var row = patches
        func addRow(into destination: UnsafeMutablePointer<Float>) {
            let source = dBlock.pointer + row * width
            for i in 0..<width { destination[i] += source[i] }
            row += 1
        }
        let newline = dImageNewline?.pointer
        guard tileCount > 1 else {
            if let newline { addRow(into: newline) }
            return dTiles
        }
        for y in grid.keptRows {
            for x in grid.keptColumns {
                let tile = 1 + (y / side.height) * grid.tileColumns + x / side.width
                addRow(into: dTiles[tile].pointer + ((y % side.height) * side.width + x % side.width) * width)
            }
            if let newline { addRow(into: newline) } else { row += 1 }
        }
        return dTiles
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
