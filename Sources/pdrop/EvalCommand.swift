import ArgumentParser

/// Benchmark evaluation: scoring answers files with each benchmark's official rules.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate on the paper's benchmarks.",
        subcommands: [EvalScoreCommand.self])
}
