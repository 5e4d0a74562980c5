import Engine
import Foundation
import Models
import TensorCore
import TokenReduction

/// What one optimizer step did.
public struct StepReport: Sendable {
    /// 1-based number of the step just done.
    public let step: Int
    /// The batch's mean cross-entropy over its labelled tokens, before the update.
    public let loss: Double
    public let learningRate: Double
    /// Global gradient norm before clipping.
    public let gradientNorm: Double
    /// Input tokens of the batch (text + image, before any drop).
    public let tokens: Int
    public let labelledTokens: Int
    /// Tokens × layers the decoder processed (what PyramidDrop reduces).
    public let layerTokens: Int
    public let seconds: Double
    /// Per sample of the batch, per drop, per image block: the kept image tokens.
    public let keptImageTokens: [KeptImageTokens]
}

/// The training loop's state: the model with its fp32 parameters, the optimizer and the data
/// stream. One `trainStep` = one batch forward + backward + AdamW update.
public final class Trainer {
    public let pipeline: InferenceSession
    public let model: TrainingModel
    public let optimizer: AdamW
    public private(set) var stream: SampleStream
    public let reducer: VisualTokenReducer
    public let batchSize: Int
    /// The run's settings as JSON text, stored in checkpoints and compared on resume.
    public let settingsDescription: String

    /// `pipeline` must have been loaded with `copiesToFloat32`.
    public init(
        pipeline: InferenceSession, samples: [TrainingSample], trainable: TrainableParts, reducer: VisualTokenReducer,
        optimizer settings: OptimizerSettings, batchSize: Int, shuffleSeed: UInt64? = nil, settingsDescription: String = ""
    ) throws {
        try settings.validate()
        if batchSize < 1 { throw TrainingSettingError.invalid("the batch size must be at least 1, got \(batchSize)") }
        guard let llava = pipeline.loaded.llava, let layout = pipeline.loaded.llavaLayout, !pipeline.loaded.float32Tensors.isEmpty else {
            throw TrainingSettingError.invalid("\(pipeline.directory.path): training needs a LLaVA checkpoint loaded as fp32")
        }
        self.pipeline = pipeline
        model = TrainingModel(llava: llava, layout: layout, parameters: pipeline.loaded.float32Tensors, trainable: trainable)
        optimizer = AdamW(
            settings: settings, names: model.trainableNames, parameters: model.parameters,
            visionNames: Set(model.trainableNames.filter { $0.hasPrefix(layout.visionPrefix) }))
        stream = try SampleStream(samples: samples, shuffleSeed: shuffleSeed)
        self.reducer = reducer
        self.batchSize = batchSize
        self.settingsDescription = settingsDescription
    }

    /// Steps done so far.
    public var step: Int { optimizer.step }

    /// Loss (and gradients, accumulated from zero) of `batch` without updating anything.
    public func lossAndGradients(_ batch: [TrainingSample]) throws -> (loss: Double, outcomes: [SampleOutcome]) {
        model.zeroGradients()
        let labelled = batch.reduce(0) { total, sample in
            total + sample.labels.dropFirst().filter { $0 != ignoreLabel }.count
        }
        let scale = Float(1 / Double(max(labelled, 1)))
        var lossSum = 0.0
        var outcomes: [SampleOutcome] = []
        for sample in batch {
            let images = try sample.imageFile.map { [try pipeline.imageInput(imageFile: $0)] } ?? []
            let outcome = try model.accumulate(
                sample: sample.id, inputIds: sample.inputIds, labels: sample.labels, images: images, reducer: reducer, lossScale: scale)
            lossSum += outcome.lossSum
            outcomes.append(outcome)
        }
        return (lossSum / Double(max(labelled, 1)), outcomes)
    }

    /// Takes the next batch, computes loss and gradients, updates the parameters.
    public func trainStep() throws -> StepReport {
        let clock = ContinuousClock()
        let start = clock.now
        let batch = stream.next(batchSize)
        let (loss, outcomes) = try lossAndGradients(batch)
        let withoutImages = batch.allSatisfy { $0.imageFile == nil }
        let (norm, learningRate) = optimizer.update(
            parameters: model.parameters, gradients: model.gradients, skipping: withoutImages ? model.imageOnlyNames : [])
        return StepReport(
            step: optimizer.step, loss: loss, learningRate: learningRate, gradientNorm: norm,
            tokens: batch.reduce(0) { $0 + $1.length }, labelledTokens: outcomes.reduce(0) { $0 + $1.labelledTokens },
            layerTokens: outcomes.reduce(0) { $0 + $1.tokensPerLayer.reduce(0, +) },
            seconds: (clock.now - start).inSeconds, keptImageTokens: outcomes.map(\.keptImageTokens))
    }

    /// Writes a checkpoint of the current parameters and state into `directory`.
    public func save(to directory: URL) throws {
        try TrainingCheckpoint.save(
            to: directory, source: pipeline.directory, parameters: model.parameters, optimizer: optimizer,
            state: TrainerState(step: step, stream: stream.position, settings: settingsDescription))
    }

    /// Continues a run saved in `directory` (whose weights this trainer's pipeline was loaded from).
    public func restore(from directory: URL) throws {
        let state = try TrainingCheckpoint.restore(from: directory, optimizer: optimizer)
        if !settingsDescription.isEmpty && state.settings != settingsDescription {
            throw TrainingCheckpointError.inconsistent(
                directory: directory.path, reason: "it was written with other settings: \(state.settings) (now: \(settingsDescription))")
        }
        do {
            try stream.seek(to: state.stream)
        } catch {
            throw TrainingCheckpointError.inconsistent(directory: directory.path, reason: "\(error)")
        }
    }
}
