import FileAccess
import ArgumentParser
import Engine
import Foundation
import Models
import TensorCore
import TokenReduction
import Training

extension BadRecordPolicy: ExpressibleByArgument {}

/// The signal (SIGINT or SIGTERM) that asked the run to stop; the loop saves a checkpoint after the step in flight and exits.
nonisolated(unsafe) private var interruptRequested: sig_atomic_t = 0

/// Fine-tunes a LLaVA checkpoint on LLaVA conversation data, with or without PyramidDrop.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a LLaVA checkpoint (fp32) on conversation data, with or without PyramidDrop.",
        discussion: """
            Data: LLaVA's conversation JSON (llava_v1_5_mix665k.json style), Vicuna v1 template (or --template), loss on the \
            answers only (docs/TRAINING.md). Checkpoints go to --output as model.safetensors in the input's \
            layout (loadable by `pdrop generate` and transformers) plus trainer_state.safetensors for --resume; \
            Each save replaces the checkpoint as one unit (a killed run leaves the last complete one); Ctrl-C and SIGTERM \
            save one before exiting.
            """)

    @Option(help: "Checkpoint directory to start from (llava-hf layout); not needed with --resume.")
    var model: String?

    @Option(help: "LLaVA conversation JSON (an array of {id, image, conversations}).")
    var data: String

    @Option(help: "Folder the records' image paths are relative to.")
    var images: String?

    @OptionGroup var reductionOptions: ReductionOptions

    @Option(help: "LLaVA-NeXT: use only grid resolutions of at most this many tiles (besides the base image), e.g. 4 or 8.")
    var maxTiles: Int?

    @Option(help: "Optimizer steps in the whole run (the cosine schedule ends here).")
    var steps: Int

    @Option(help: "Samples per step.")
    var batchSize: Int = 1

    @Option(help: "Peak learning rate (LLaVA: 2e-5 fine-tuning, 1e-3 projector pretraining).")
    var lr: Double = 2e-5

    @Option(help: "Peak learning rate of the vision tower, on the same schedule (LLaVA-NeXT's mm_vision_tower_lr; default: --lr). Only with a --train that includes vision.")
    var visionLr: Double?

    @Option(help: "Linear warmup steps (default: 3% of --steps, rounded up, as LLaVA's warmup_ratio 0.03).")
    var warmupSteps: Int?

    @Option(help: "AdamW decoupled weight decay, on matrices only.")
    var weightDecay: Double = 0

    @Option(help: "Clip the global gradient norm to this (0 disables).")
    var maxGradNorm: Double = 1.0

    @Option(help: "What trains: projector, projector,language (LLaVA's fine-tuning), or all.")
    var train: String = "projector,language"

    @Option(help: "Permute the records each epoch with this seed (default: file order).")
    var shuffle: UInt64?

    @Option(help: "Conversation template: vicuna_v1 (LLaVA's training, with its system prompt) or llava_1.5 (llava-hf's prompt, what `pdrop generate` and `pdrop eval run` use by default).")
    var template: String = ConversationTemplate.vicunaV1.name

    @Option(help: "Bad data records: skip (listed, then skipped) or refuse (stop before training).")
    var badRecords: BadRecordPolicy = .skip

    @Option(help: "Directory for checkpoints and training_log.jsonl.")
    var output: String

    @Option(help: "Also save every N steps (0: at the end and on Ctrl-C only).")
    var saveEvery: Int = 0

    @Option(help: "Stop (saving) after this step, though the learning-rate schedule runs to --steps; --resume continues. For comparing runs part-way.")
    var stopAtStep: Int?

    @Option(help: "Continue the run saved in this directory (weights, AdamW moments, data position).")
    var resume: String?

    func validate() throws {
        if model == nil && resume == nil { throw ValidationError("give --model (or --resume to continue a run)") }
        if steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        if saveEvery < 0 { throw ValidationError("--save-every must be ≥ 0, got \(saveEvery)") }
        if let stopAtStep, !(1...steps).contains(stopAtStep) { throw ValidationError("--stop-at-step must be in 1...--steps (\(steps)), got \(stopAtStep)") }
        if ConversationTemplate.named(template) == nil {
            throw ValidationError("--template '\(template)' is unknown; choose from \(ConversationTemplate.all.map(\.name).joined(separator: ", "))")
        }
        if let maxTiles, maxTiles < 1 { throw ValidationError("--max-tiles must be at least 1, got \(maxTiles)") }
        if reductionOptions.reduction == .fastv {
            throw ValidationError("--reduction fastv is an inference baseline; train with none or pdrop")
        }
    }

    func run() throws {
        try failing {
            let trainable = try TrainableParts(parsing: train)
            if visionLr != nil && !trainable.contains(.vision) {
                throw TrainingSettingError.invalid("--vision-lr sets the vision tower's learning rate, but --train \(train) leaves the tower frozen")
            }
            let source = URL(fileURLWithPath: resume ?? model!).resolvingSymlinksInPath()
            if resume != nil {
                try TrainingCheckpoint.recoverInterruptedSave(at: source)
                if !FileManager.default.fileExists(atPath: source.appendingPathComponent(TrainingCheckpoint.stateFile).path) {
                    throw TrainingCheckpointError.notATrainingCheckpoint(directory: source.path)
                }
            }
            let outputDirectory = try TrainingCheckpoint.outputDirectory(output, input: source, resumingInPlaceAllowed: resume != nil)
            log("loading \(source.path) (fp32); OpenBLAS idle threads wait \(OpenBLASEnvironment.currentThreadTimeout); OpenBLAS kernels: \(BLASCoreType.current)")
            let pipeline = try withFlagNames {
                try InferenceSession(directory: source, imageOptions: ImageProcessingOptions(maxTiles: maxTiles), copiesToFloat32: true)
            }
            guard pipeline.loaded.visionLanguageModel != nil, let tokenizer = pipeline.tokenizer else {
                throw PipelineError.notAVisionLanguageModel(directory: source.path)
            }
            guard let llava = pipeline.loaded.llava else {
                throw PipelineError.needsLlava(directory: source.path, family: pipeline.loaded.family.name, purpose: "training")
            }
            let reducer = try reductionOptions.request().makeReducer(decoder: llava.decoder.shape, imageTokens: llava.tokensPerTile)
            let dataset = try TrainingDataset.load(
                dataFile: URL(fileURLWithPath: data), imagesDirectory: images.map { URL(fileURLWithPath: $0) },
                tokenizer: tokenizer, imageTokenID: llava.imageTokenId, tokensPerImage: llava.tokensPerTile,
                contextLength: llava.decoder.contextLength, template: ConversationTemplate.named(template) ?? .vicunaV1,
                badRecords: badRecords, imageTokenCount: pipeline.imageTokenCount)
            for record in dataset.badRecords { log("skipped \(record)") }
            log("\(dataset.samples.count) samples of \(dataset.recordCount) records; training \(trainable); \(describe(reducer))")

            let settings = OptimizerSettings {
                $0.learningRate = lr
                $0.visionLearningRate = visionLr
                $0.warmupSteps = warmupSteps ?? Int((Double(steps) * 0.03).rounded(.up))
                $0.totalSteps = steps
                $0.weightDecay = weightDecay
                $0.maxGradientNorm = maxGradNorm > 0 ? maxGradNorm : nil
            }
            try settings.validate()
            let description = try encodeJSONText(RunSettings(
                trainable: trainable.description, reduction: describe(reducer), batchSize: batchSize, shuffle: shuffle.map(String.init),
                optimizer: settings))
            let trainer = try Trainer(
                pipeline: pipeline, samples: dataset.samples, trainable: trainable, reducer: reducer, optimizer: settings,
                batchSize: batchSize, shuffleSeed: shuffle, settingsDescription: description)
            if resume != nil {
                try trainer.restore(from: source)
                log("resumed at step \(trainer.step) (\(trainer.stream.position))")
            }
            let lastStep = stopAtStep ?? steps
            if trainer.step >= lastStep {
                log("the run is already at step \(trainer.step) (stopping at \(lastStep) of \(steps)): nothing to do")
                return
            }

            // Ctrl-C (SIGINT) and SIGTERM (timeout, schedulers, container runtimes) end the run
            // after the step in flight, with a save. A launcher may have blocked them for its
            // children (test runners do): they must reach us.
            var stopSignals = sigset_t()
            sigemptyset(&stopSignals)
            for stopSignal in [SIGINT, SIGTERM] {
                signal(stopSignal) { received in interruptRequested = received }
                sigaddset(&stopSignals, stopSignal)
            }
            pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
            defer { for stopSignal in [SIGINT, SIGTERM] { signal(stopSignal, SIG_DFL) } }
            let progress = ProgressLine(unit: "step", total: steps, first: trainer.step)
            var trainingSeconds = 0.0, trainingTokens = 0
            let logURL = outputDirectory.appendingPathComponent(TrainingCheckpoint.logFile)
            try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
            // The log holds exactly the steps of the checkpoint it continues (none for a new run).
            try TrainingCheckpoint.writeLog(
                from: (resume != nil ? source : outputDirectory).appendingPathComponent(TrainingCheckpoint.logFile), to: logURL,
                throughStep: trainer.step)
            while trainer.step < lastStep {
                let report = try trainer.trainStep()
                trainingSeconds += report.seconds
                trainingTokens += report.tokens
                progress.update(position: report.step, seconds: trainingSeconds, detail: String(
                    format: "loss %.4f lr %.2e %.0f tok/s", report.loss, report.learningRate, Double(trainingTokens) / max(trainingSeconds, 1e-9)))
                try appendLine(
                    try encodeJSONText(LogLine(
                        step: report.step, loss: report.loss, lr: report.learningRate, gradNorm: report.gradientNorm,
                        tokens: report.tokens, layerTokens: report.layerTokens, seconds: report.seconds)),
                    to: logURL)
                let stopSignal = interruptRequested
                let interrupted = stopSignal != 0
                if interrupted || trainer.step == lastStep || (saveEvery > 0 && trainer.step % saveEvery == 0) {
                    progress.finishLine()
                    try trainer.save(to: outputDirectory)
                    log("saved step \(trainer.step) to \(outputDirectory.path)")
                }
                if interrupted {
                    log("\(stopSignal == SIGTERM ? "terminated" : "interrupted"): resume with --resume \(outputDirectory.path)")
                    throw ExitCode(128 + stopSignal)
                }
            }
        }
    }
}

struct RunSettings: Encodable {
    let trainable: String
    let reduction: String
    let batchSize: Int
    let shuffle: String?
    let optimizer: OptimizerSettings
}

struct LogLine: Encodable {
    let step: Int
    let loss: Double
    let lr: Double
    let gradNorm: Double
    let tokens: Int
    let layerTokens: Int
    let seconds: Double
}

func log(_ message: String) {
    FileHandle.standardError.write(Data("\(message)\n".utf8))
}

func appendLine(_ line: String, to url: URL) throws {
    if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
    let handle = try FileHandle(forWritingTo: url)
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data((line + "\n").utf8))
}
