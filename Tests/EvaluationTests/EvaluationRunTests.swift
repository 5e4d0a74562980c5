import Engine
import Evaluation
import Foundation
import Models
import Testing
import TestSupport
import TokenReduction

/// `EvaluationRun` on the tiny LLaVA: answers under several settings in one pass, resuming after
/// an interruption, chunks merged, and a file answered under other settings refused.
@Suite struct EvaluationRunTests {
    static let session = Result { try InferenceSession(directory: Fixtures.url("tiny-llava")) }

    /// A LLaVA question jsonl of `count` questions about the one photograph.
    static func questionFile(in directory: URL, count: Int = 4) throws -> URL {
        let file = directory.appendingPathComponent("questions.jsonl")
        let lines = (0..<count).map { index in
            #"{"question_id": \#(index + 1), "image": "chelsea.jpg", "text": "Is there a cat number \#(index) in the image?\nAnswer the question using a single word or phrase.", "category": "random"}"#
        }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: file)
        return file
    }

    static func settings() throws -> [EvaluationSetting] {
        var none = ReductionRequest()
        none.kind = .none
        return [try EvaluationSetting(name: "none", request: none), try EvaluationSetting(name: "pdrop", request: ReductionRequest())]
    }

    /// The answers of a file without the timings, which differ from run to run.
    static func answersWithoutTimings(_ file: URL) throws -> [AnswerRecord] {
        try readAnswers(from: file).map { record in
            var record = record
            record.metadata["vision_seconds"] = nil
            record.metadata["prefill_seconds"] = nil
            return record
        }
    }

    func run(_ questions: [BenchmarkQuestion], into answers: URL, settings: [EvaluationSetting]) throws -> EvaluationRun.Summary {
        let run = try EvaluationRun(
            session: try Self.session.get(), settings: settings, files: settings.map { answersFile(answers, setting: $0.name) },
            maxNewTokens: 6, modelId: "tiny-llava")
        return try run.answer(questions)
    }

    @Test func settingsInOnePassResumeAndChunksGiveTheSameAnswers() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let questions = try loadQuestions(
            file: try Self.questionFile(in: directory), imagesDirectory: Fixtures.url("images"))
        #expect(questions.count == 4 && questions[0].answersFilePrompt.hasPrefix("Is there a cat number 0"))
        let settings = try Self.settings()

        // Uninterrupted.
        let whole = directory.appendingPathComponent("whole.jsonl")
        let summary = try run(questions, into: whole, settings: settings)
        #expect(summary == EvaluationRun.Summary(answered: 8, resumed: 0))
        let none = try Self.answersWithoutTimings(answersFile(whole, setting: "none"))
        let pyramid = try Self.answersWithoutTimings(answersFile(whole, setting: "pdrop"))
        #expect(none.map(\.questionId) == (1...4).map { .integer($0) } && pyramid.count == 4)
        #expect(none[0].metadata["method"] == .string("none") && pyramid[0].metadata["method"] == .string("pdrop"))
        guard case let .number(average) = pyramid[0].metadata["average_image_tokens_per_layer"],
              case let .number(full) = none[0].metadata["average_image_tokens_per_layer"]
        else { Issue.record("no average image tokens in \(pyramid[0].metadata)"); return }
        #expect(full == 576 && average < full)

        // The same answer as the session gives directly.
        let session = try Self.session.get()
        let prompt = try session.prepare(.messages([ChatMessage(role: .user, parts: [.image(questions[0].image!), .text(questions[0].text)])]))
        let direct = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: 6)
        #expect(none[0].text == (direct.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines))

        // Interrupted after two questions, with a torn last line, then resumed.
        let resumed = directory.appendingPathComponent("resumed.jsonl")
        _ = try run(Array(questions.prefix(2)), into: resumed, settings: settings)
        let handle = try FileHandle(forWritingTo: answersFile(resumed, setting: "pdrop"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"question_id": 3, "text": "torn"#.utf8))
        try handle.close()
        let second = try run(questions, into: resumed, settings: settings)
        #expect(second == EvaluationRun.Summary(answered: 4, resumed: 4))
        for name in ["none", "pdrop"] {
            #expect(try Self.answersWithoutTimings(answersFile(resumed, setting: name)) == Self.answersWithoutTimings(answersFile(whole, setting: name)))
        }

        // Two chunks merged.
        let chunkFiles = try (0..<2).map { index -> URL in
            let file = directory.appendingPathComponent("chunk\(index).jsonl")
            _ = try run(Array(try chunk(questions, count: 2, index: index)), into: file, settings: [settings[1]])
            return answersFile(file, setting: "pdrop")
        }
        let merged = directory.appendingPathComponent("merged.jsonl")
        #expect(try mergeAnswers(chunkFiles, into: merged) == 4)
        #expect(try Self.answersWithoutTimings(merged) == pyramid)
        #expect(throws: EvaluationFileError.self) { try mergeAnswers([chunkFiles[0], chunkFiles[0]], into: merged) }

        // Resuming a file with other settings is refused.
        var other = ReductionRequest()
        other.budget = .averageImageTokens(128)
        #expect(throws: EvaluationSettingError.self) {
            try run(questions, into: whole, settings: [try EvaluationSetting(name: "pdrop", request: other)])
        }
    }

    @Test func chunksAreLLaVAsCeilingSplit() throws {
        let items = Array(0..<10)
        #expect(try (0..<3).map { Array(try chunk(items, count: 3, index: $0)) } == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
        #expect(try chunk(items, count: 4, index: 3).isEmpty == false)
        #expect(try chunk(Array(0..<2), count: 4, index: 3).isEmpty)
        #expect(throws: EvaluationSettingError.self) { try chunk(items, count: 2, index: 2) }
    }

    @Test func badQuestionFilesAreNamed() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("q.jsonl")
        try Data("{\"question_id\": 1, \"image\": \"a.jpg\", \"text\": \"x\"}\n{\"question_id\": 1, \"image\": \"a.jpg\", \"text\": \"y\"}\n".utf8).write(to: file)
        #expect(throws: EvaluationFileError.self) { try loadQuestions(file: file, imagesDirectory: directory) }
        #expect(throws: EvaluationFileError.self) { try loadQuestions(file: directory.appendingPathComponent("q.csv"), imagesDirectory: nil) }
        try Data("{\"question_id\": 1, \"image\": \"a.jpg\", \"text\": \"x\"}\n".utf8).write(to: file)
        #expect(throws: EvaluationFileError.self) { try loadQuestions(file: file, imagesDirectory: nil) }
    }
}
