import Engine
import Evaluation
import Foundation
import Models
import Testing
import TestSupport
import TokenReduction

/// `pdrop eval run`'s answers against transformers on the same questions
/// (tools/reference/make_eval_fixtures.py: greedy, 12 tokens, none and PyramidDrop [2, 4, 6] /
/// [0.5, 0.25, 0.125] on tiny-llava), for each question format; then scored.
@Suite struct EvaluationReferenceTests {
    struct ReferenceAnswer: Decodable {
        let questionId: QuestionID
        let benchmark: String
        let prompt: String
        let text: String
        let answersFilePrompt: String
        enum CodingKeys: String, CodingKey {
            case questionId = "question_id", benchmark, prompt, text, answersFilePrompt = "answers_file_prompt"
        }
    }

    struct Reference: Decodable { let answers: [String: [ReferenceAnswer]] }

    static let reference = Result {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Fixtures.url("eval/reference-answers.json")))
    }

    /// (benchmark, question file, images directory) of the fixture.
    static let formats: [(String, String, String?)] = [
        ("pope", "eval/pope/llava_pope_test.jsonl", "eval/pope/images"),
        ("scienceqa", "eval/scienceqa/llava_test_CQM-A.json", "eval/scienceqa/images"),
        ("mmbench", "eval/mmbench/mmbench_dev.tsv", nil),
    ]

    static func settings() throws -> [EvaluationSetting] {
        var none = ReductionRequest()
        none.kind = .none
        var pyramid = ReductionRequest()
        pyramid.layers = [2, 4, 6]
        pyramid.ratios = [0.5, 0.25, 0.125]
        return [try EvaluationSetting(name: "none", request: none), try EvaluationSetting(name: "pdrop", request: pyramid)]
    }

    @Test(arguments: formats.map(\.0))
    func answersEqualTransformers(benchmark: String) throws {
        let (_, questionsPath, imagesPath) = Self.formats.first { $0.0 == benchmark }!
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let session = try InferenceSession(directory: Fixtures.url("tiny-llava"))
        let questions = try loadQuestions(file: Fixtures.url(questionsPath), imagesDirectory: imagesPath.map { Fixtures.url($0) })
        let settings = try Self.settings()
        let answers = directory.appendingPathComponent("\(benchmark).jsonl")
        let run = try EvaluationRun(
            session: session, settings: settings, files: settings.map { answersFile(answers, setting: $0.name) },
            maxNewTokens: 12, modelId: "tiny-llava")
        _ = try run.answer(questions)

        for setting in settings {
            let expected = try #require(try Self.reference.get().answers[setting.name]).filter { $0.benchmark == benchmark }
            let ours = try readAnswers(from: answersFile(answers, setting: setting.name))
            #expect(ours.map(\.questionId) == expected.map(\.questionId))
            for (answer, reference) in zip(ours, expected) {
                #expect(answer.text == reference.text, "\(setting.name) \(benchmark) \(answer.questionId)")
                #expect(answer.prompt == reference.answersFilePrompt, "\(benchmark) \(answer.questionId)")
            }
        }
        // The prompt given to the model is the reference's, character for character.
        for (question, reference) in zip(questions, try Self.reference.get().answers["none"]!.filter { $0.benchmark == benchmark }) {
            let parts: [ChatMessage.Part] = (question.image.map { [.image($0)] } ?? []) + [.text(question.text)]
            #expect(session.render([ChatMessage(role: .user, parts: parts)]).text == reference.prompt)
        }

        // Scored with the benchmark's rules (the random model's answers are noise: the numbers
        // are what the rules give on them, checked for shape, not for skill).
        let annotations: URL? = benchmark == "pope" ? Fixtures.url("eval/pope/coco") : nil
        let report = try Scoring.score(
            EvaluationBenchmark(rawValue: benchmark)!, questions: Fixtures.url(questionsPath),
            answers: answersFile(answers, setting: "pdrop"), annotations: annotations)
        #expect(report.questions == questions.count || benchmark == "mmbench")
        #expect(report.unanswered == 0 && (0...100).contains(report.score))
    }
}
