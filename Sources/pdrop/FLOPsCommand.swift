import FileAccess
import ArgumentParser
import Benchmarks
import Engine
import Foundation
import TokenReduction

/// The paper's FLOPs figures and exact counts for a preset model shape, without weights.
struct FLOPsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flops",
        abstract: "FLOPs of a preset model with and without reduction (no weights needed).")

    @Option(help: "Model shape: \(ModelPreset.all.map(\.name).joined(separator: ", ")).")
    var preset: String = ModelPreset.llava15_7B.name

    @Option(help: "Text tokens of the prompt, for the exact count.")
    var textTokens: Int = 64

    @OptionGroup var reductionOptions: ReductionOptions

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        guard let preset = ModelPreset.named(preset) else {
            throw ValidationError("--preset '\(preset)' is unknown; choose one of \(ModelPreset.all.map(\.name).joined(separator: ", "))")
        }
        if textTokens < 1 { throw ValidationError("--text-tokens must be at least 1") }
        try failing {
            let positionAxes = if case .qwen2VL = preset.vision { 3 } else { 1 }  // M-RoPE
            let reducer = try reductionOptions.request().makeReducer(decoder: preset.decoder, imageTokens: preset.imageTokens, positionAxes: positionAxes)
            let report = FLOPs.prefillReport(
                decoder: preset.decoder, visionAndProjector: preset.exactVisionFLOPs, textTokens: textTokens, imageBlockSizes: [preset.imageTokens], reducer: reducer)
            if json {
                struct Output: Encodable { let preset: String; let reduction: String; let imageTokens: Int; let textTokens: Int; let flops: FLOPsReport }
                print(try encodeJSONText(Output(preset: preset.name, reduction: describe(reducer), imageTokens: preset.imageTokens, textTokens: textTokens, flops: report)))
                return
            }
            let average = Double(report.imageTokensPerLayer.reduce(0, +)) / Double(report.imageTokensPerLayer.count)
            print("\(preset.name): \(preset.imageTokens) image tokens, \(textTokens) text tokens, \(preset.decoder.layers) layers")
            print("reduction: \(describe(reducer)); average image tokens per layer \(String(format: "%.1f", average))")
            print(String(format: "paper figure (image tokens only): %.2f TFLOPs without reduction -> %.2f TFLOPs (%.1f%% fewer)",
                         report.paperImageTeraFLOPsWithoutReduction, report.paperImageTeraFLOPs,
                         100 * (1 - report.paperImageTeraFLOPs / report.paperImageTeraFLOPsWithoutReduction)))
            print(String(format: "exact prefill multiply-adds: %.3f T (vision + projector %.3f T, language model %.3f T, lm_head %.4f T, ranking %.4f T)",
                         report.exactTotal / 1e12, report.exactVisionAndProjector / 1e12, report.exactLanguageModel / 1e12,
                         report.exactLMHead / 1e12, report.exactRanking / 1e12))
        }
    }
}
