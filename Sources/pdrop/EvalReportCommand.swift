import FileAccess
import ArgumentParser
import Evaluation
import Foundation
import Vision

/// Scores every answers file of a sweep and puts them side by side: a table and the figure.
struct EvalReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Score answers files (or folders of them) and report score beside cost, with a plot of score against TFLOPs.")

    @Argument(help: "Answers files written by 'pdrop eval run', or folders of them (*.jsonl).")
    var paths: [String]

    @Option(help: "The benchmark: \(EvaluationBenchmark.allCases.map(\.rawValue).joined(separator: ", ")).")
    var benchmark: String

    @Option(help: "The benchmark's questions file.")
    var questions: String

    @Option(help: "Labels or annotations (a file or folder, as 'pdrop eval score' takes them).")
    var annotations: String?

    @Option(help: "Write the table as Markdown here.")
    var markdown: String?

    @Option(help: "Write the results as JSON here.")
    var json: String?

    @Option(help: "Draw score against paper TFLOPs per method into this PNG.")
    var plot: String?

    func validate() throws {
        if EvaluationBenchmark(rawValue: benchmark) == nil {
            throw ValidationError("--benchmark '\(benchmark)' is unknown; choose from \(EvaluationBenchmark.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The answers files of `paths`: files as given, folders' *.jsonl sorted by name.
    func answersFiles() throws -> [URL] {
        try paths.flatMap { path -> [URL] in
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw ValidationError("\(path): no such file or folder")
            }
            guard isDirectory.boolValue else { return [URL(fileURLWithPath: path)] }
            return try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".jsonl") }.sorted()
                .map { URL(fileURLWithPath: path).appendingPathComponent($0) }
        }
    }

    func run() throws {
        try failing {
            let kind = EvaluationBenchmark(rawValue: benchmark)!
            let files = try answersFiles()
            if files.isEmpty { throw ValidationError("no answers files in \(paths.joined(separator: ", "))") }
            let results = EvaluationReport.ordered(try files.map { file in
                let score = try Scoring.score(
                    kind, questions: URL(fileURLWithPath: questions), answers: file, annotations: annotations.map { URL(fileURLWithPath: $0) })
                return try EvaluationReport.result(answers: file, score: score)
            })
            let table = EvaluationReport.markdown(results, benchmark: benchmark)
            print(table, terminator: "")
            if let markdown { try Data(table.utf8).write(to: URL(fileURLWithPath: markdown)) }
            if let json { try encodeJSON(results).write(to: URL(fileURLWithPath: json)) }
            if let plot {
                try PNGEncoder.write(EvaluationReport.plot(results, benchmark: benchmark).render(), to: URL(fileURLWithPath: plot))
            }
        }
    }
}
