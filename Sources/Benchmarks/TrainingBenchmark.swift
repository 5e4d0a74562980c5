import Engine
import Foundation
import Models
import TensorCore
import TokenReduction
import Training

/// Random fp32 parameters of any shape, generated in memory and kept by name (the values of
/// `RandomWeightSource`, widened): a trainable model for benchmarks without a checkpoint.
final class RandomFloat32Parameters: WeightSource {
    private let random = RandomWeightSource(seed: 7)
    private(set) var tensors: [String: Tensor] = [:]

    func contains(_ name: String) -> Bool { random.contains(name) }

    func take(_ name: String, shape: [Int]) -> Tensor {
        let tensor = random.take(name, shape: shape)
        tensors[name] = tensor
        return tensor
    }

    func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        let tensor = random.takeMatrix(name, rows: rows, columns: columns).toTensor()
        tensors[name] = tensor
        return WeightMatrix(tensor)
    }
}

/// One reduction's training step on a preset.
public struct TrainingStepBenchmark: Codable, Equatable {
    public var reduction: String
    /// Best of the timed steps: forward, backward and AdamW update of one sample.
    public var stepSeconds: Double
    /// Input tokens (text + image) per second.
    public var tokensPerSecond: Double
    /// Σ over decoder layers of the tokens the layer processed.
    public var layerTokens: Int
    /// Exact multiply-adds of the decoder's forward (FLOPs.prefillReport), the part PyramidDrop shrinks.
    public var exactDecoderForwardMultiplyAdds: Double
    /// The none step's seconds / this one's.
    public var speedupOverNone: Double
    /// 1 − this step's seconds / the none step's: the paper's "training time saved".
    public var timeSaved: Double
    /// The none forward's exact multiply-adds / this one's.
    public var exactForwardRatio: Double
    public var peakResidentBytes: Int
}

/// `pdrop bench --train`: training step time without reduction and with PyramidDrop, at a
/// LLaVA-NeXT-like image/text ratio, in one run with the machine's peaks.
public struct TrainingBenchmark: Codable, Equatable {
    public var preset: String
    public var imageTokens: Int
    public var textTokens: Int
    public var answerTokens: Int
    public var trainable: String
    public var parameters: Int
    public var machine: MachinePeaks
    public var results: [TrainingStepBenchmark]

    /// A random fp32 model of `preset`'s shape, one sample of `preset.tiles` random tiles
    /// (one run of image tokens) between 5 and `textTokens − 5` text tokens, the last
    /// `answerTokens` of them learned; one untimed step, then the best of `steps` timed steps
    /// for none and for the paper's default PyramidDrop schedule.
    public static func run(
        preset: ModelPreset, textTokens: Int, answerTokens: Int, steps: Int, trainable: TrainableParts = [.projector, .language],
        progress: (String) -> Void = { _ in }
    ) throws -> TrainingBenchmark {
        let configuration = try Benchmark.configuration(preset)
        let parameterCount = Self.parameterEstimate(configuration)
        let needed = Double(parameterCount) * 16  // parameter, gradient, two Adam moments
        let physical = Double(ProcessInfo.processInfo.physicalMemory)
        if needed > 0.6 * physical {
            throw TrainingSettingError.invalid(String(
                format: "preset %@ has %.2fB parameters: fp32 training needs about %.0f GB (parameters, gradients, Adam moments) of this machine's %.0f GB; use a smaller preset",
                preset.name, Double(parameterCount) / 1e9, needed / 1e9, physical / 1e9))
        }
        if answerTokens < 1 || answerTokens > textTokens - 6 {
            throw TrainingSettingError.invalid("--answer-tokens must be between 1 and --text-tokens − 6 (\(textTokens - 6)), got \(answerTokens)")
        }
        progress("\(preset.name): measuring the machine (sgemm, memory bandwidth)")
        let machine = MachinePeaks.measure()
        progress("  " + machine.summary)

        var results: [TrainingStepBenchmark] = []
        let decoder = DecoderShape(configuration.textConfig)
        let reducers: [VisualTokenReducer] = [
            NoReduction(), PyramidDropReducer(schedule: try PyramidDropSchedule.paperDefault(layerCount: decoder.layers)),
        ]
        var imageTokens = 0
        for reducer in reducers {
            progress("\(preset.name): generating random fp32 weights")
            let source = RandomFloat32Parameters()
            let llava = LlavaModel(configuration: configuration, loader: source, layout: .hub)
            let model = TrainingModel(llava: llava, layout: .hub, parameters: source.tensors, trainable: trainable)
            let optimizer = AdamW(settings: OptimizerSettings { $0.learningRate = 1e-5; $0.totalSteps = steps + 1 },
                                  names: model.trainableNames, parameters: model.parameters)
            let side = configuration.visionConfig.imageSize
            var state: UInt64 = 12345
            let tiles = (0..<preset.tiles).map { _ in
                let pixels = Tensor(shape: [3, side, side])  // (3, side, side)
                for i in 0..<pixels.count { pixels[i] = RandomWeightSource.uniform(&state) }
                return pixels
            }
            imageTokens = preset.tiles * llava.tokensPerTile
            let before = 5, length = textTokens + imageTokens
            let ids = (0..<length).map { index -> Int in
                if index >= before && index < before + imageTokens { return configuration.imageTokenIndex }
                return 3 + (index * 7919) % 31000
            }
            let labels = ids.indices.map { $0 >= length - answerTokens ? ids[$0] : ignoreLabel }
            var best = Double.infinity, layerTokens = 0
            resetPeakResidentMemory()
            for step in 0...steps {
                let clock = ContinuousClock()
                let start = clock.now
                model.zeroGradients()
                let outcome = try model.accumulate(
                    sample: "benchmark", inputIds: ids, labels: labels, images: tiles.map { ImageInput(tiles: [$0]) }, reducer: reducer,
                    lossScale: 1 / Float(answerTokens))
                optimizer.update(parameters: model.parameters, gradients: model.gradients)
                let seconds = (clock.now - start).inSeconds
                layerTokens = outcome.tokensPerLayer.reduce(0, +)
                progress(String(format: "  %@ step %d: %.2f s%@", describe(reducer), step, seconds, step == 0 ? " (untimed warm-up)" : ""))
                if step > 0 { best = min(best, seconds) }
            }
            let report = FLOPs.prefillReport(
                decoder: decoder, visionAndProjector: 0, textTokens: textTokens, imageBlockSizes: [imageTokens],
                reducer: reducer)
            var entry = TrainingStepBenchmark(
                reduction: describe(reducer), stepSeconds: best, tokensPerSecond: Double(length) / best, layerTokens: layerTokens,
                exactDecoderForwardMultiplyAdds: report.exactLanguageModel, speedupOverNone: 1, timeSaved: 0, exactForwardRatio: 1,
                peakResidentBytes: peakResidentMemory())
            if let none = results.first {
                entry.speedupOverNone = none.stepSeconds / best
                entry.timeSaved = 1 - best / none.stepSeconds
                entry.exactForwardRatio = none.exactDecoderForwardMultiplyAdds / entry.exactDecoderForwardMultiplyAdds
            }
            results.append(entry)
        }
        return TrainingBenchmark(
            preset: preset.name, imageTokens: imageTokens, textTokens: textTokens, answerTokens: answerTokens,
            trainable: trainable.description, parameters: parameterCount, machine: machine, results: results)
    }

    /// Parameters of a LLaVA configuration (decoder, head, projector, vision tower), for the memory check.
    static func parameterEstimate(_ c: LlavaConfiguration) -> Int {
        let t = c.textConfig, v = c.visionConfig
        let attention = t.hiddenSize * t.headDim * (2 * t.numAttentionHeads + 2 * t.numKeyValueHeads)
        let decoder = t.numHiddenLayers * (attention + 3 * t.hiddenSize * t.intermediateSize + 2 * t.hiddenSize)
        let vision = v.numHiddenLayers * (4 * v.hiddenSize * v.hiddenSize + 2 * v.hiddenSize * v.intermediateSize)
        let projector = v.hiddenSize * t.hiddenSize + t.hiddenSize * t.hiddenSize
        return decoder + 2 * t.vocabSize * t.hiddenSize + vision + projector
    }

    /// The Markdown report of `benchmarks`; `source` says what produced it.
    public static func markdown(_ benchmarks: [TrainingBenchmark], source: String) -> String {
        var lines = [
            "# Training performance", "",
            "Generated by \(source); do not edit by hand. Each section is one run: the machine's sgemm peak and",
            "memory bandwidth are measured first, then one training step (forward, backward, AdamW) of one sample",
            "without reduction and with PyramidDrop's default schedule, best of the timed steps after an untimed one.",
            "Weights are random fp32 of the preset's shape; the paper reports 40% less training time for LLaVA-NeXT.", "",
        ]
        for b in benchmarks {
            lines.append("## \(b.preset): \(b.imageTokens) image tokens, \(b.textTokens) text tokens (\(b.answerTokens) learned), training \(b.trainable)")
            lines.append("")
            lines.append(String(format: "Machine: sgemm peak %.1f GFLOP/s, memory %.1f GB/s, %d threads. %.0fM parameters.",
                                b.machine.sgemmGFLOPs, b.machine.memoryGBs, b.machine.threads, Double(b.parameters) / 1e6))
            lines.append("")
            lines.append("| reduction | step s | tokens/s | layer tokens | speedup | time saved | exact forward FLOPs ratio | peak RSS GB |")
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in b.results {
                lines.append(String(format: "| %@ | %.2f | %.0f | %d | %.2f× | %.0f%% | %.2f× | %.2f |",
                                    r.reduction, r.stepSeconds, r.tokensPerSecond, r.layerTokens, r.speedupOverNone, 100 * r.timeSaved,
                                    r.exactForwardRatio, Double(r.peakResidentBytes) / 1e9))
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}
