import Evaluation
import Foundation
import Testing
import TestSupport

@Suite struct KeptTokenRecallTests {
    @Test func recallIsTheShareOfObjectPatchesKeptAtEachDrop() {
        let recall = KeptTokenRecall.recall(kept: [[1, 2, 3, 10], [2, 3], [3]], objectPatches: [2, 3, 4, 5])
        #expect(recall == [0.5, 0.5, 0.25])
        #expect(KeptTokenRecall.recall(kept: [[1]], objectPatches: []) == nil)
        #expect(KeptTokenRecall.recall(kept: [], objectPatches: [1]) == [])
    }

    @Test func meanRecallReadsAnswersAndPatchFiles() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let answers = directory.appendingPathComponent("answers.jsonl"), patches = directory.appendingPathComponent("patches.jsonl")
        try Data("""
            {"question_id": 1, "text": "a", "metadata": {"kept_image_tokens": [[0, 1, 2, 3], [0, 1]]}}
            {"question_id": 2, "text": "b", "metadata": {"kept_image_tokens": [[4, 5, 6, 7], [6, 7]]}}
            {"question_id": 3, "text": "c", "metadata": {"kept_image_tokens": [[0, 1], [0]]}}
            """.utf8).write(to: answers)
        try Data("""
            {"question_id": 1, "patches": [0, 2]}
            {"question_id": 2, "patches": [4, 5, 6, 7]}
            {"question_id": 3, "patches": []}
            """.utf8).write(to: patches)
        let (perDrop, questions) = try KeptTokenRecall.meanRecall(answers: answers, patches: patches)
        #expect(questions == 2 && perDrop == [1, 0.5])
        try Data("{\"question_id\": 9, \"text\": \"x\", \"metadata\": {\"kept_image_tokens\": []}}\n".utf8).write(to: answers)
        #expect(throws: EvaluationFileError.self) { try KeptTokenRecall.meanRecall(answers: answers, patches: patches) }
    }
}
