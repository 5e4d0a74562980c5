import ArgumentParser
import Engine
import Foundation
import Models
import TensorCore
import TokenReduction

/// Answers a question about an image (or continues a prompt of ids), greedily.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate an answer about an image, with visual token reduction.")

    @OptionGroup var input: InputOptions
    @OptionGroup var reductionOptions: ReductionOptions

    @Option(help: "Number of tokens to generate at most.")
    var maxNewTokens: Int = 64

    @Flag(help: "Keep generating past an end-of-sequence token.")
    var ignoreEos = false

    @Option(help: "Write a PNG of the image once per stage with the dropped patches dimmed.")
    var saveKept: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1, got \(maxNewTokens)") }
    }

    func run() throws {
        try failing {
            let clock = ContinuousClock()
            let start = clock.now
            let prepared = try input.prepare()
            let reducer = try prepared.reducer(reductionOptions)
            if saveKept != nil, let pipeline = prepared.pipeline, pipeline.anyresProcessor != nil {
                throw PipelineError.keptPictureNeedsSingleTile(directory: pipeline.directory.path)
            }
            let setupSeconds = (clock.now - start).inSeconds
            let result = try prepared.generate(reducer: reducer, maxNewTokens: maxNewTokens, stopAtEndOfSequence: !ignoreEos)
            let text = prepared.decode?(result.tokens)
            if let saveKept {
                try saveKeptPicture(prepared: prepared, keptImageTokens: result.keptImageTokens, path: saveKept)
            }
            let flops = prepared.flops(reducer)
            if json {
                let report = GenerateReport(
                    tokens: result.tokens, text: text, promptTokens: result.promptTokens, imageTokens: prepared.imageTokens,
                    prefillSeconds: result.prefillSeconds, visionSeconds: prepared.visionSeconds,
                    decodeTokensPerSecond: result.decodeTokensPerSecond, reduction: describe(reducer),
                    keptImageTokens: KeptImageTokens(perDrop: result.keptImageTokens), tokensPerLayer: result.tokensPerLayer,
                    keyValueCacheBytes: result.keyValueCacheBytes, flops: flops)
                print(try encodeJSON(report))
                return
            }
            print(text ?? "tokens: \(result.tokens)")
            let drops = result.keptImageTokens.map { $0.map(\.count).map(String.init).joined(separator: "+") }
            FileHandle.standardError.write(Data("""
                [\(prepared.inputIds.count) prompt tokens, \(prepared.imageTokens) image tokens; \(describe(reducer))\(drops.isEmpty ? "" : "; kept " + drops.joined(separator: " -> "))]
                [setup \(format(setupSeconds)) s, vision \(format(prepared.visionSeconds)) s, prefill \(format(result.prefillSeconds)) s, decode \(String(format: "%.1f", result.decodeTokensPerSecond)) tokens/s; image TFLOPs (paper) \(String(format: "%.4f", flops.paperImageTeraFLOPs)) of \(String(format: "%.4f", flops.paperImageTeraFLOPsWithoutReduction))]

                """.utf8))
        }
    }
}

struct GenerateReport: Encodable {
    let tokens: [Int]
    let text: String?
    let promptTokens: Int
    let imageTokens: Int
    let prefillSeconds: Double
    let visionSeconds: Double
    let decodeTokensPerSecond: Double
    let reduction: String
    let keptImageTokens: KeptImageTokens
    let tokensPerLayer: [Int]
    let keyValueCacheBytes: Int
    let flops: FLOPsReport
}

func format(_ seconds: Double) -> String { String(format: "%.3f", seconds) }

func saveKeptPicture(prepared: PreparedRun, keptImageTokens: [[[Int]]], path: String) throws {
    guard let pipeline = prepared.pipeline else {
        throw ValidationError("--save-kept needs an image (a LLaVA checkpoint with --image)")
    }
    try pipeline.saveKeptPicture(imageFiles: prepared.imageFiles, keptImageTokens: keptImageTokens, to: path)
}
