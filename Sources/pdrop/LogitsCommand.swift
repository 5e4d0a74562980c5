import FileAccess
import ArgumentParser
import Engine
import Foundation
import TokenReduction

/// The prompt's ids and the last position's logits, as one JSON object.
struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Print the expanded prompt ids and the last position's logits as JSON.")

    @OptionGroup var input: InputOptions
    @OptionGroup var reductionOptions: ReductionOptions
    @OptionGroup var computeOptions: ComputeOptions

    func run() throws {
        computeOptions.apply()
        try failing {
            let (session, prompt) = try input.prepare()
            let reducer = try session.reducer(reductionOptions, for: prompt)
            let result = try session.generate(prompt, reducer: reducer, maxNewTokens: 0, stopAtEndOfSequence: false)
            struct Output: Encodable {
                let inputIds: [Int]
                let imageTokens: Int
                let lastLogits: [Float]
                let reduction: String
                let keptImageTokens: KeptImageTokensJSON
                let flops: FLOPsReport
            }
            print(try encodeJSONText(Output(
                inputIds: prompt.inputIds, imageTokens: prompt.imageTokens, lastLogits: result.lastPromptLogits,
                reduction: describe(reducer), keptImageTokens: KeptImageTokensJSON(perDrop: result.keptImageTokens),
                flops: session.flops(prompt, reducer: reducer))))
        }
    }
}
