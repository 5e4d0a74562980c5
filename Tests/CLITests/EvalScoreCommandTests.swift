import Foundation
import Testing
import TestSupport

@Suite struct EvalScoreCommandTests {
    @Test func scoreJSONPrintsTheReport() throws {
        let folder = try makeTemporaryDirectory("eval-score")
        defer { try? FileManager.default.removeItem(at: folder) }
        let questions = folder.appendingPathComponent("gqa.json"), answers = folder.appendingPathComponent("answers.jsonl")
        try Data("{\"1\": {\"answer\": \"left\"}, \"2\": {\"answer\": \"yes\"}}".utf8).write(to: questions)
        try Data("{\"question_id\": \"1\", \"text\": \"Left.\"}\n".utf8).write(to: answers)
        let run = try runPDrop(["eval", "score", "--benchmark", "gqa", "--questions", questions.path, "--answers", answers.path, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(object["benchmark"] as? String == "gqa" && object["score"] as? Double == 50)
        #expect(object["questions"] as? Int == 2 && object["unanswered"] as? Int == 1)
        #expect((object["metrics"] as? [String: Double])?["accuracy"] == 50)
        let bad = try runPDrop(["eval", "score", "--benchmark", "gqa", "--questions", folder.appendingPathComponent("none.json").path, "--answers", answers.path])
        #expect(bad.status != 0 && bad.stderr.contains("none.json"))
    }
}
