import Evaluation
import Foundation
import Testing
import TestSupport

@Suite struct AnswersFileTests {
    @Test func answersRoundTripAndBadLinesAreNamed() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("answers.jsonl")
        try Data("""
            {"question_id": 1, "prompt": "Q?", "text": "No", "answer_id": "a", "model_id": "m", "metadata": {"x": [1, "y", null]}}

            {"question_id": "4", "text": "B"}
            """.utf8).write(to: file)
        let answers = try readAnswers(from: file)
        #expect(answers.map(\.questionId) == [.integer(1), .string("4")])
        #expect(answers[0].metadata["x"] == .array([.number(1), .string("y"), .null]) && answers[1].prompt == "")
        try Data("{\"question_id\": 1, \"text\": \"x\"}\n{\"text\": 3}\n".utf8).write(to: file)
        #expect(throws: EvaluationFileError.self) { try readAnswers(from: file) }
        do { _ = try readAnswers(from: file) } catch { #expect("\(error)".contains("answers.jsonl:2")) }
    }
}
