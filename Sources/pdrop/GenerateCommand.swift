import FileAccess
import ArgumentParser
import Engine
import Foundation
import Models
import TensorCore
import TokenReduction

/// Answers a question about an image (or continues a prompt of ids).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate an answer about an image, with visual token reduction.")

    @OptionGroup var input: InputOptions
    @OptionGroup var reductionOptions: ReductionOptions
    @OptionGroup var computeOptions: ComputeOptions

    @Option(help: "Number of tokens to generate at most.")
    var maxNewTokens: Int = 64

    @Flag(help: "Keep generating past an end-of-sequence token.")
    var ignoreEos = false

    @Option(help: "Sampling temperature; 0 (the default) is greedy decoding.")
    var temperature: Float = 0

    @Option(help: "Sample only among the k most likely tokens (0: all).")
    var topK: Int = 0

    @Option(help: "Sample only among the most likely tokens whose probabilities add up to p (1: all).")
    var topP: Float = 1

    @Option(help: "Seed of the sampler, for reproducible sampling.")
    var seed: UInt64?

    @Option(help: "Stop when the text reaches this string (left out of the answer); repeatable.")
    var stop: [String] = []

    @Option(help: "Write a PNG of the image once per stage with the dropped patches dimmed.")
    var saveKept: String?

    @Flag(help: "Print one JSON object instead of streaming the text.")
    var json = false

    func validate() throws {
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1, got \(maxNewTokens)") }
        do {
            try sampling.validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    var sampling: SamplingParameters { SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed) }

    func run() throws {
        computeOptions.apply()
        try failing {
            let clock = ContinuousClock()
            let start = clock.now
            let (session, prompt) = try input.prepare()
            let reducer = try session.reducer(reductionOptions, for: prompt)
            if saveKept != nil && !session.drawsKeptPicture {
                throw FlaggedError(
                    flag: "--save-kept",
                    underlying: session.visionLanguageModel == nil
                        ? PipelineError.notAVisionLanguageModel(directory: session.directory.path)
                        : PipelineError.keptPictureNeedsSingleTile(directory: session.directory.path))
            }
            let setupSeconds = (clock.now - start).inSeconds
            let parameters = GenerationParameters(
                maxNewTokens: maxNewTokens, stopAtEndOfSequence: !ignoreEos, stopStrings: stop, sampling: sampling)
            let streams = !json && session.tokenizer != nil
            let result = try session.generate(prompt, reducer: reducer, parameters: parameters) { event in
                if streams && !event.text.isEmpty {
                    FileHandle.standardOutput.write(Data(event.text.utf8))
                }
                return .continue
            }
            if let saveKept {
                try session.saveKeptPicture(images: prompt.images, keptImageTokens: result.keptImageTokens, to: saveKept)
            }
            let flops = session.flops(prompt, reducer: reducer)
            if json {
                let report = GenerateReport(
                    tokens: result.tokens, text: result.text, stopReason: result.stopReason, promptTokens: result.promptTokens,
                    imageTokens: prompt.imageTokens, prefillSeconds: result.prefillSeconds, visionSeconds: prompt.visionSeconds,
                    decodeTokensPerSecond: result.decodeTokensPerSecond, reduction: describe(reducer),
                    keptImageTokens: KeptImageTokensJSON(perDrop: result.keptImageTokens), tokensPerLayer: result.tokensPerLayer,
                    keyValueCacheBytes: result.keyValueCacheBytes, flops: flops)
                print(try encodeJSONText(report))
                return
            }
            // The streamed text went straight to the file handle; end its line there too.
            FileHandle.standardOutput.write(Data((streams ? "\n" : "tokens: \(result.tokens)\n").utf8))
            let drops = result.keptImageTokens.map { $0.map(\.count).map(String.init).joined(separator: "+") }
            FileHandle.standardError.write(Data("""
                [\(prompt.inputIds.count) prompt tokens, \(prompt.imageTokens) image tokens; \(describe(reducer))\(drops.isEmpty ? "" : "; kept " + drops.joined(separator: " -> ")); stopped: \(result.stopReason.rawValue)]
                [setup \(format(setupSeconds)) s, vision \(format(prompt.visionSeconds)) s, prefill \(format(result.prefillSeconds)) s, decode \(String(format: "%.1f", result.decodeTokensPerSecond)) tokens/s; image TFLOPs (paper) \(String(format: "%.4f", flops.paperImageTeraFLOPs)) of \(String(format: "%.4f", flops.paperImageTeraFLOPsWithoutReduction))]

                """.utf8))
        }
    }
}

struct GenerateReport: Encodable {
    let tokens: [Int]
    let text: String?
    let stopReason: StopReason
    let promptTokens: Int
    let imageTokens: Int
    let prefillSeconds: Double
    let visionSeconds: Double
    let decodeTokensPerSecond: Double
    let reduction: String
    let keptImageTokens: KeptImageTokensJSON
    let tokensPerLayer: [Int]
    let keyValueCacheBytes: Int
    let flops: FLOPsReport
}

func format(_ seconds: Double) -> String { String(format: "%.3f", seconds) }
