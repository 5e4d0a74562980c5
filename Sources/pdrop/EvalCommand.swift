import ArgumentParser

/// Benchmark evaluation: answering benchmark files, scoring them with each benchmark's official rules, reports.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate on the paper's benchmarks.",
        subcommands: [EvalRunCommand.self, EvalScoreCommand.self, EvalReportCommand.self, EvalMergeCommand.self, EvalStudyCommand.self])
}
