import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `pdrop eval run`, `score`, `report` and `merge` end to end on the POPE fixture with the tiny
/// LLaVA: two settings in one pass, a run killed mid-way and resumed, chunks merged.
@Suite struct EvalCommandTests {
    let questions = Fixtures.url("eval/pope/llava_pope_test.jsonl").path
    let images = Fixtures.url("eval/pope/images").path
    let labels = Fixtures.url("eval/pope/coco").path

    func runArguments(answers: URL, extra: [String] = []) -> [String] {
        ["eval", "run", "--model", Fixtures.url("tiny-llava").path, "--benchmark", "pope", "--questions", questions,
         "--images", images, "--answers-file", answers.path, "--max-new-tokens", "3",
         "--setting", "none:--reduction none", "--setting", "pdrop:--layers 2,4,6 --ratios 0.5,0.25,0.125"] + extra
    }

    /// An answers file's lines without the timings, which differ from run to run.
    func linesWithoutTimings(_ file: URL) throws -> [String] {
        try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map { line in
            var object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            var metadata = object["metadata"] as? [String: Any] ?? [:]
            metadata["vision_seconds"] = nil
            metadata["prefill_seconds"] = nil
            object["metadata"] = metadata
            return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        }
    }

    @Test func runScoreReportAndResume() throws {
        let directory = try makeTemporaryDirectory("eval-cli")
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = directory.appendingPathComponent("straight/pope.jsonl")
        let run = try runPDrop(runArguments(answers: straight))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("question 6/6"))
        let pdropFile = directory.appendingPathComponent("straight/pope.pdrop.jsonl")
        #expect(try linesWithoutTimings(pdropFile).count == 6)

        let score = try runPDrop(["eval", "score", "--benchmark", "pope", "--questions", questions, "--annotations", labels,
                                  "--answers", pdropFile.path, "--json"])
        let scored = try #require(try JSONSerialization.jsonObject(with: Data(score.stdout.utf8)) as? [String: Any], "\(score.stderr)")
        #expect(scored["benchmark"] as? String == "pope" && scored["questions"] as? Int == 6 && scored["unanswered"] as? Int == 0)

        let markdown = directory.appendingPathComponent("report.md"), json = directory.appendingPathComponent("report.json")
        let plot = directory.appendingPathComponent("report.png")
        let report = try runPDrop(["eval", "report", directory.appendingPathComponent("straight").path, "--benchmark", "pope",
                                   "--questions", questions, "--annotations", labels, "--markdown", markdown.path,
                                   "--json", json.path, "--plot", plot.path])
        #expect(report.status == 0, "\(report.stderr)")
        let table = try String(contentsOf: markdown, encoding: .utf8)
        #expect(table.contains("| none | none |") && table.contains("| pdrop | pdrop |"))
        let results = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [[String: Any]])
        let none = try #require(results.first { $0["setting"] as? String == "none" })
        let pyramid = try #require(results.first { $0["setting"] as? String == "pdrop" })
        #expect((pyramid["paperImageTeraFLOPs"] as? Double ?? 1) < (none["paperImageTeraFLOPs"] as? Double ?? 0))
        #expect((pyramid["averageImageTokensPerLayer"] as? Double ?? 576) < 576 && pyramid["prefillSpeedup"] is Double)
        #expect(try Data(contentsOf: plot).prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))

        // Killed once the first answer is written, then resumed: the same files.
        let resumed = directory.appendingPathComponent("resumed/pope.jsonl")
        try FileManager.default.createDirectory(at: resumed.deletingLastPathComponent(), withIntermediateDirectories: true)
        let process = try ChildProcess(pdropExecutable, runArguments(answers: resumed))
        let firstAnswers = directory.appendingPathComponent("resumed/pope.pdrop.jsonl")
        let deadline = Date().addingTimeInterval(300)
        while !process.hasExited && Date() < deadline && ((try? Data(contentsOf: firstAnswers))?.isEmpty ?? true) {
            usleep(20_000)
        }
        kill(process.identifier, SIGTERM)
        process.waitForExit()
        let killedAfter = (try? linesWithoutTimings(firstAnswers).count) ?? 0
        #expect(killedAfter >= 1 && killedAfter < 6, "killed after \(killedAfter) answers")
        let rest = try runPDrop(runArguments(answers: resumed))
        #expect(rest.status == 0 && rest.stderr.contains("already answered"), "\(rest.stderr)")
        for name in ["none", "pdrop"] {
            #expect(try linesWithoutTimings(directory.appendingPathComponent("resumed/pope.\(name).jsonl"))
                == linesWithoutTimings(directory.appendingPathComponent("straight/pope.\(name).jsonl")))
        }
        // Other settings into the same file are refused.
        let other = try runPDrop(runArguments(answers: resumed, extra: []).dropLast(2) + ["--setting", "pdrop:--budget-tokens 300"])
        #expect(other.status != 0 && other.stderr.contains("another setting"))

        // Three chunks merged equal the single run.
        var chunkFiles: [String] = []
        for index in 0..<3 {
            let chunk = directory.appendingPathComponent("chunks/pope-\(index).jsonl")
            let part = try runPDrop(Array(runArguments(answers: chunk).dropLast(4)) + [
                "--setting", "pdrop:--layers 2,4,6 --ratios 0.5,0.25,0.125", "--num-chunks", "3", "--chunk-index", String(index)])
            #expect(part.status == 0, "\(part.stderr)")
            chunkFiles.append(directory.appendingPathComponent("chunks/pope-\(index).pdrop.jsonl").path)
        }
        let merged = directory.appendingPathComponent("merged.jsonl")
        let merge = try runPDrop(["eval", "merge", "--output", merged.path] + chunkFiles)
        #expect(merge.status == 0, "\(merge.stderr)")
        #expect(try linesWithoutTimings(merged) == linesWithoutTimings(pdropFile))
    }
}
