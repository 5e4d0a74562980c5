import Foundation

/// The benchmarks of the PyramidDrop paper that can be scored from a LLaVA answers file.
public enum EvaluationBenchmark: String, CaseIterable, Codable, Sendable {
    case pope, scienceqa, mmbench, mme, vqav2, textvqa, vizwiz, gqa, seed, docvqa, infovqa, chartqa, ocrbench
}

/// A benchmark's score, on the scale papers print (POPE 85.9, not 0.859).
public struct ScoreReport: Codable, Equatable, Sendable {
    public var benchmark: String
    /// The headline number of the benchmark's papers.
    public var score: Double
    /// Everything else the official script prints, e.g. "random.f1", "img_accuracy", "category.<name>".
    public var metrics: [String: Double]
    public var questions: Int
    /// Questions with no answer in the answers file; each is scored as wrong.
    public var unanswered: Int
    /// The first few unanswered question ids, for the report.
    public var unansweredIds: [String]

    public init(benchmark: String, score: Double, metrics: [String: Double], questions: Int, unanswered: Int, unansweredIds: [String]) {
        self.benchmark = benchmark
        self.score = score
        self.metrics = metrics
        self.questions = questions
        self.unanswered = unanswered
        self.unansweredIds = unansweredIds
    }
}

/// The official scoring rules of each benchmark, applied to a LLaVA answers file.
///
/// Answers are matched to questions by `question_id`, whatever their order. A question without
/// an answer counts as wrong and is counted in `unanswered`. An answer to a question id the
/// questions file does not hold, or a second answer to the same question, is an error: either
/// means the answers were produced from another questions file, and a score computed anyway
/// would silently describe the wrong benchmark.
public enum Scoring {
    public static func score(_ benchmark: EvaluationBenchmark, questions: URL, answers: URL, annotations: URL?) throws -> ScoreReport {
        switch benchmark {
        case .pope: return try POPEScoring.score(questions: questions, answers: answers, annotations: annotations)
        case .scienceqa: return try ScienceQAScoring.score(questions: questions, answers: answers)
        case .mmbench: return try MMBenchScoring.score(questions: questions, answers: answers)
        case .mme: return try MMEScoring.score(questions: questions, answers: answers, annotations: annotations)
        case .vqav2, .textvqa, .vizwiz, .gqa, .seed, .docvqa, .infovqa, .chartqa, .ocrbench:
            return try ShortAnswerScoring.score(benchmark, questions: questions, answers: answers, annotations: annotations)
        }
    }
}

/// The answers of one answers file, by question id, checked against the questions they answer.
struct AnswerSheet {
    private let textByQuestion: [String: String]
    private(set) var unansweredIds: [String] = []

    /// Fails when an answer names a question id that `questionIds` lacks, or answers one twice.
    /// `keyedByPrompt` keys each answer by `questionKey(id, prompt)`: LLaVA's MME questions share
    /// one id per image, and only the prompt tells the two apart.
    init(answers url: URL, questionIds: Set<String>, questionsFile: URL, keyedByPrompt: Bool = false) throws {
        var textByQuestion: [String: String] = [:]
        for answer in try readAnswers(from: url) {
            let id = keyedByPrompt ? AnswerSheet.questionKey(answer.questionId.description, prompt: answer.prompt) : answer.questionId.description
            guard questionIds.contains(id) else {
                throw EvaluationFileError(file: url.path, reason: "an answer to question id \(id), which \(questionsFile.path) does not hold")
            }
            guard textByQuestion.updateValue(answer.text, forKey: id) == nil else {
                throw EvaluationFileError(file: url.path, reason: "question id \(id) is answered twice")
            }
        }
        self.textByQuestion = textByQuestion
    }

    static func questionKey(_ id: String, prompt: String) -> String { "\(id)\n\(prompt)" }

    /// The answer to `id`, or nil (and `id` is recorded as unanswered).
    mutating func text(for id: String) -> String? {
        if let text = textByQuestion[id] { return text }
        unansweredIds.append(id)
        return nil
    }

    /// Records a question no answer could reach (one the questions file lacks), as unanswered.
    mutating func recordUnanswered(_ description: String) { unansweredIds.append(description) }

    func report(_ benchmark: EvaluationBenchmark, score: Double, metrics: [String: Double], questions: Int) -> ScoreReport {
        ScoreReport(benchmark: benchmark.rawValue, score: score, metrics: metrics, questions: questions,
                    unanswered: unansweredIds.count, unansweredIds: Array(unansweredIds.prefix(10)))
    }
}

/// Correct and total counts of a group of questions.
struct Tally {
    var correct = 0.0
    var total = 0

    mutating func add(_ credit: Double) {
        correct += credit
        total += 1
    }

    mutating func add(_ isCorrect: Bool) { add(isCorrect ? 1.0 : 0.0) }

    /// Mean credit × 100; 0 for an empty group.
    var percent: Double { total == 0 ? 0 : 100 * correct / Double(total) }
}
