import ArgumentParser
import Foundation
import Engine
import TokenReduction

extension ReductionKind: ExpressibleByArgument {}
extension PositionMode: ExpressibleByArgument {}

/// Reduction flags shared by generate, logits, flops and bench.
struct ReductionOptions: ParsableArguments {
    @Option(help: "Visual token reduction: none, fastv, pdrop, or random (PyramidDrop's layers and counts, a random subset kept: the control).")
    var reduction: ReductionKind = .pdrop

    @Option(help: "PDrop: layers after which to drop, 1-based (e.g. 8,16,24).")
    var layers: String?

    @Option(help: "PDrop: cumulative keep ratios of the original image tokens (e.g. 0.5,0.25,0.125).")
    var ratios: String?

    @Option(help: "PDrop: ratio λ between stages (the paper's form; with --stages).")
    var lambda: Double?

    @Option(help: "PDrop: number of equal stages over the decoder (with --lambda).")
    var stages: Int?

    @Option(help: "Budget: average image tokens per decoder layer; solves the schedule (or FastV's ratio).")
    var budgetTokens: Double?

    @Option(help: "Budget: image TFLOPs as the paper counts them; solves the schedule (or FastV's ratio).")
    var budgetTflops: Double?

    @Option(help: "FastV: layers before the drop (default 2).")
    var fastvLayer: Int?

    @Option(help: "FastV: fraction of image tokens dropped (default 0.5).")
    var fastvRatio: Double?

    @Option(help: "Positions after a drop: reindex (PDrop's default) or preserve (FastV's default).")
    var positions: PositionMode?

    @Option(help: "random: the seed of the kept subsets.")
    var randomSeed: UInt64?

    func request() throws -> ReductionRequest {
        var request = ReductionRequest()
        request.kind = reduction
        request.layers = try layers.map { try parseList($0, flag: "--layers") { Int($0) } }
        request.ratios = try ratios.map { try parseList($0, flag: "--ratios") { Double($0) } }
        request.lambda = lambda
        request.stages = stages
        if budgetTokens != nil && budgetTflops != nil {
            throw ValidationError("give --budget-tokens or --budget-tflops, not both")
        }
        request.budget = budgetTokens.map { .averageImageTokens($0) } ?? budgetTflops.map { .paperTeraFLOPs($0) }
        request.fastVLayer = fastvLayer
        request.fastVRatio = fastvRatio
        request.positions = positions
        request.randomSeed = randomSeed
        return request
    }
}

/// "8,16,24" → [8, 16, 24], naming the flag and the item that does not parse.
func parseList<T>(_ text: String, flag: String, _ parse: (String) -> T?) throws -> [T] {
    try text.split(separator: ",", omittingEmptySubsequences: false).enumerated().map { index, piece in
        let trimmed = piece.trimmingCharacters(in: .whitespaces)
        guard let value = parse(trimmed) else {
            throw ValidationError("\(flag): item \(index + 1) ('\(trimmed)') is not a valid \(T.self == Int.self ? "integer" : "number")")
        }
        return value
    }
}
