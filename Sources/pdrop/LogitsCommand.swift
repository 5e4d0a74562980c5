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

    func run() throws {
        try failing {
            let prepared = try input.prepare()
            let reducer = try prepared.reducer(reductionOptions)
            let result = try prepared.generate(reducer: reducer, maxNewTokens: 0, stopAtEndOfSequence: false)
            struct Output: Encodable {
                let inputIds: [Int]
                let imageTokens: Int
                let lastLogits: [Float]
                let reduction: String
                let keptImageTokens: KeptImageTokens
                let flops: FLOPsReport
            }
            print(try encodeJSON(Output(
                inputIds: prepared.inputIds, imageTokens: prepared.imageTokens, lastLogits: result.lastPromptLogits,
                reduction: describe(reducer), keptImageTokens: KeptImageTokens(perDrop: result.keptImageTokens),
                flops: prepared.flops(reducer))))
        }
    }
}
