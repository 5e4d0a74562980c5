import ArgumentParser
import Benchmarks
import Engine
import Foundation
import TokenReduction
import Training

/// Measures the machine, then none / FastV / PDrop on random-weight presets.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark prefill and decode for none, FastV and PDrop, as ratios to this machine's peaks.")

    @Option(name: .long, help: "Preset to run (repeatable): \(ModelPreset.all.map(\.name).joined(separator: ", ")).")
    var preset: [String] = []

    @Option(help: "A checkpoint written by tools/bench_pytorch.py to benchmark (repeatable, e.g. its fp32 and its bf16 copy).")
    var model: [String] = []

    @Option(help: "The pytorch.json of tools/bench_pytorch.py to compare with, one per --model, in the same order.")
    var pytorch: [String] = []

    @Option(help: "Text tokens around the image block (default 40; 256 with --train).")
    var textTokens: Int?

    @Flag(help: "Time training steps (forward, backward, AdamW) without reduction and with PDrop instead of inference.")
    var train = false

    @Option(help: "With --train: learned (answer) tokens at the end of the text.")
    var answerTokens: Int = 128

    @Option(help: "With --train: timed steps per reduction after one untimed step.")
    var steps: Int = 2

    @Option(help: "Decode steps to time.")
    var decodeTokens: Int = 8

    @OptionGroup var computeOptions: ComputeOptions

    @Option(help: "tools/llamacpp/bench.sh's results.json: its side-by-side table is added to the report.")
    var llamacpp: String?

    @Option(help: "Random matrices of presets stored as bf16 or q8_0 (the bf16 values through `pdrop quantize`'s Q8_0).")
    var weights: String = "bf16"

    @Flag(help: "Measure only the machine: CPU features, fp32 FMA and bf16 dot-product peaks, sgemm, our bf16 product, memory bandwidth.")
    var machine = false

    @Option(help: "Render the Markdown report from a JSON file an earlier run wrote, without measuring.")
    var render: String?

    @Option(help: "Runs per timing; the best is reported.")
    var repeats: Int = 2

    @Option(help: "Write the results as JSON to this file.")
    var jsonOutput: String?

    @Option(help: "Write the Markdown report to this file (docs/PERFORMANCE.md is made this way).")
    var markdownOutput: String?

    func validate() throws {
        if preset.isEmpty && model.isEmpty && render == nil && !machine {
            throw ValidationError("give --preset (e.g. small, llava-1.5-7b), --model, --machine or --render")
        }
        if !pytorch.isEmpty && pytorch.count != model.count {
            throw ValidationError("give one --pytorch per --model (got \(pytorch.count) for \(model.count)), or none")
        }
        if (textTokens ?? 1) < 1 || decodeTokens < 1 || repeats < 1 || steps < 1 {
            throw ValidationError("--text-tokens, --decode-tokens and --repeats must be at least 1")
        }
        if !["bf16", "q8_0"].contains(weights) { throw ValidationError("--weights '\(weights)' is unknown; choose bf16 or q8_0") }
        for name in preset where ModelPreset.named(name) == nil {
            throw ValidationError("--preset '\(name)' is unknown; choose from \(ModelPreset.all.map(\.name).joined(separator: ", "))")
        }
    }

    func run() throws {
        computeOptions.apply()
        try failing {
            // Read before measuring: a bad file fails at once, not after minutes of benchmarks.
            let comparison = try llamacpp.map { try LlamaCppComparison.load(URL(fileURLWithPath: $0)) }
            if let render {
                let benchmarks = try JSONDecoder().decode([PresetBenchmark].self, from: Data(contentsOf: URL(fileURLWithPath: render)))
                let markdown = Benchmark.markdown(benchmarks, source: "`make bench` (figures measured into `\(render)`, rendered by `pdrop bench --render`)")
                    + (comparison.map { "\n" + $0.markdown(benchmarks) } ?? "")
                if let markdownOutput { try markdown.write(toFile: markdownOutput, atomically: true, encoding: .utf8) }
                print(markdown)
                return
            }
            let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            if machine {
                let peaks = MachinePeaks.measure()
                try report(peaks) { _ in peaks.summary }
                return
            }
            if train {
                try runTraining(log: log)
                return
            }
            var benchmarks: [PresetBenchmark] = []
            for (index, model) in model.enumerated() {
                benchmarks.append(try Benchmark.run(
                    checkpoint: URL(fileURLWithPath: model), pytorchReport: pytorch.isEmpty ? nil : URL(fileURLWithPath: pytorch[index]),
                    decodeTokens: decodeTokens, repeats: repeats, progress: log))
            }
            for name in preset {
                guard let preset = ModelPreset.named(name) else { continue }
                benchmarks.append(try Benchmark.run(
                    preset: preset, textTokens: textTokens ?? 40, decodeTokens: decodeTokens, repeats: repeats,
                    weights: weights == "q8_0" ? .q8_0 : .bfloat16, progress: log))
            }
            try report(benchmarks) { Benchmark.markdown(benchmarks, source: $0) + (comparison.map { "\n" + $0.markdown(benchmarks) } ?? "") }
        }
    }

    /// Prints the Markdown of `benchmarks` (`render` gets the command line that made them) and
    /// writes it and the JSON where asked.
    func report<T: Encodable>(_ benchmarks: T, render: (String) -> String) throws {
        let command = "pdrop bench " + CommandLine.arguments.dropFirst(2).joined(separator: " ")
        let markdown = render("`\(command.trimmingCharacters(in: .whitespaces))`")
        if let markdownOutput { try markdown.write(toFile: markdownOutput, atomically: true, encoding: .utf8) }
        if let jsonOutput {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(benchmarks).write(to: URL(fileURLWithPath: jsonOutput))
        }
        print(markdown)
    }

    /// `--train`: one report over the presets, as Markdown (and JSON when asked).
    func runTraining(log: @escaping (String) -> Void) throws {
        if !model.isEmpty || render != nil { throw ValidationError("--train runs on --preset only") }
        var benchmarks: [TrainingBenchmark] = []
        for name in preset {
            guard let preset = ModelPreset.named(name) else { continue }
            benchmarks.append(try TrainingBenchmark.run(
                preset: preset, textTokens: textTokens ?? 256, answerTokens: answerTokens, steps: steps, progress: log))
        }
        try report(benchmarks) { TrainingBenchmark.markdown(benchmarks, source: $0) }
    }
}
