import FileAccess
import ArgumentParser
import Evaluation
import Foundation

/// Scores a LLaVA answers file with a benchmark's official rules.
struct EvalScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score an answers file with a benchmark's official rules.")

    @Option(help: "Benchmark: \(EvaluationBenchmark.allCases.map(\.rawValue).joined(separator: ", ")).")
    var benchmark: String

    @Option(help: "The benchmark's questions file.")
    var questions: String

    @Option(help: "The answers file (LLaVA answers format, one JSON object a line).")
    var answers: String

    @Option(help: "Labels or ground truth: POPE's and MME's folder, or the reference answers file.")
    var annotations: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        guard let chosen = EvaluationBenchmark(rawValue: benchmark) else {
            throw ValidationError("--benchmark '\(benchmark)' is unknown; choose one of \(EvaluationBenchmark.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try failing {
            let report = try Scoring.score(chosen, questions: URL(fileURLWithPath: questions), answers: URL(fileURLWithPath: answers),
                                           annotations: annotations.map { URL(fileURLWithPath: $0) })
            if json {
                print(try encodeJSONText(report))
                return
            }
            print("\(report.benchmark): \(String(format: "%.2f", report.score)) (\(report.questions) questions, \(report.unanswered) unanswered)")
            let width = report.metrics.keys.map(\.count).max() ?? 0
            for (name, value) in report.metrics.sorted(by: { $0.key < $1.key }) {
                print("  \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(String(format: "%.4f", value))")
            }
            if !report.unansweredIds.isEmpty { print("  unanswered: \(report.unansweredIds.joined(separator: ", "))") }
        }
    }
}
