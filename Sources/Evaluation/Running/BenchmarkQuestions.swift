import Engine
import FileAccess
import Foundation

/// One question of a benchmark as the model is asked it: the user turn's text (without the
/// image placeholder, which the conversation template adds), its image if any.
public struct BenchmarkQuestion: Equatable, Sendable {
    public let id: QuestionID
    /// What LLaVA's scripts put after `<image>\n` in the user turn.
    public let text: String
    public let image: ImageSource?
    /// What LLaVA's script for this format writes as the answer's `prompt` (`cur_prompt`).
    public let answersFilePrompt: String

    public init(id: QuestionID, text: String, image: ImageSource?, answersFilePrompt: String) {
        self.id = id
        self.text = text
        self.image = image
        self.answersFilePrompt = answersFilePrompt
    }
}

/// The question files `pdrop eval run` reads, as LLaVA's evaluation scripts read them.
public enum QuestionFileFormat: String, CaseIterable, Sendable {
    /// LLaVA's question jsonl (`question_id, image, text[, category]`): POPE, MME, TextVQA, GQA,
    /// VizWiz, SEED as LLaVA ships them (`model_vqa_loader.py`).
    case llavaJSONLines = "jsonl"
    /// ScienceQA as LLaVA's conversation JSON (`llava_test_CQM-A.json`; `model_vqa_science.py`).
    case scienceQA = "scienceqa"
    /// MMBench's official TSV, images base64 in the `image` column (`model_vqa_mmbench.py`).
    case mmbenchTSV = "tsv"

    /// The format of `file`: by extension (.jsonl, .tsv), a .json file is ScienceQA's.
    public static func of(_ file: URL) throws -> QuestionFileFormat {
        switch file.pathExtension.lowercased() {
        case "jsonl": return .llavaJSONLines
        case "tsv": return .mmbenchTSV
        case "json": return .scienceQA
        default:
            throw EvaluationFileError(file: file.path, reason: "unknown question file format (expected .jsonl, .json for ScienceQA, or .tsv for MMBench)")
        }
    }
}

/// LLaVA's `--single-pred-prompt` suffix (ScienceQA, MMBench).
let singlePredictionPrompt = "Answer with the option's letter from the given choices directly."

/// The questions of `file`, with images under `imagesDirectory` (MMBench's are inline).
public func loadQuestions(file: URL, imagesDirectory: URL?) throws -> [BenchmarkQuestion] {
    let questions: [BenchmarkQuestion]
    switch try QuestionFileFormat.of(file) {
    case .llavaJSONLines: questions = try loadLLaVAQuestions(file: file, imagesDirectory: imagesDirectory)
    case .scienceQA: questions = try loadScienceQAQuestions(file: file, imagesDirectory: imagesDirectory)
    case .mmbenchTSV: questions = try loadMMBenchQuestions(file: file)
    }
    var seen = Set<QuestionID>()
    for question in questions where !seen.insert(question.id).inserted {
        throw EvaluationFileError(file: file.path, reason: "question_id \(question.id) appears more than once")
    }
    return questions
}

/// An image named in a question file, resolved under the images directory (as `os.path.join`:
/// an absolute path stands alone).
func imageSource(_ name: String, imagesDirectory: URL?, file: URL, line: Int) throws -> ImageSource {
    if name.hasPrefix("/") { return .file(URL(fileURLWithPath: name)) }
    guard let imagesDirectory else {
        throw EvaluationFileError(file: file.path, line: line, reason: "question names image \(name.debugDescription) but no images directory was given")
    }
    return .file(imagesDirectory.appendingPathComponent(name))
}

func loadLLaVAQuestions(file: URL, imagesDirectory: URL?) throws -> [BenchmarkQuestion] {
    struct Line: Decodable {
        let questionId: QuestionID
        let image: String?
        let text: String
        enum CodingKeys: String, CodingKey { case questionId = "question_id", image, text }
    }
    return try readJSONLines(Line.self, from: file).enumerated().map { index, line in
        BenchmarkQuestion(
            id: line.questionId, text: line.text,
            image: try line.image.map { try imageSource($0, imagesDirectory: imagesDirectory, file: file, line: index + 1) },
            answersFilePrompt: line.text)
    }
}

func loadScienceQAQuestions(file: URL, imagesDirectory: URL?) throws -> [BenchmarkQuestion] {
    struct Problem: Decodable {
        struct Turn: Decodable { let from: String; let value: String }
        let id: QuestionID
        let image: String?
        let conversations: [Turn]
    }
    let problems: [Problem]
    do {
        problems = try JSONDecoder().decode([Problem].self, from: Data(contentsOf: file))
    } catch {
        throw EvaluationFileError(file: file.path, reason: "not LLaVA's ScienceQA conversation JSON: \(describeFoundationError(error))")
    }
    return try problems.enumerated().map { index, problem in
        guard let first = problem.conversations.first else {
            throw EvaluationFileError(file: file.path, reason: "problem \(index) (\(problem.id)) has no conversation")
        }
        // model_vqa_science.py: the first turn without its placeholder, then the single-prediction prompt.
        let question = first.value.replacingOccurrences(of: "<image>", with: "").trimmingCharacters(in: .whitespacesAndNewlines)
        let text = question + "\n" + singlePredictionPrompt
        return BenchmarkQuestion(
            id: problem.id, text: text,
            image: try problem.image.map { try imageSource($0, imagesDirectory: imagesDirectory, file: file, line: 0) },
            answersFilePrompt: (problem.image == nil ? "" : "<image>\n") + text)
    }
}

func loadMMBenchQuestions(file: URL) throws -> [BenchmarkQuestion] {
    let table = try TabSeparatedTable(contentsOf: file)
    for column in ["index", "question", "image"] where !table.header.contains(column) {
        throw EvaluationFileError(file: file.path, line: 1, reason: "no '\(column)' column (MMBench's TSV has index, question, hint, A–D, answer, image)")
    }
    /// A cell, nil where pandas reads it as missing or LLaVA's `is_none` calls it empty ("nan", "none" in any case).
    func present(_ cells: [String: String], _ column: String) -> String? {
        cells[column].flatMap { pandasMissingValues.contains($0) || ["nan", "none"].contains($0.lowercased()) ? nil : $0 }
    }
    return try table.rows.map { line, cells in
        guard let index = Int(cells["index"]!) else {
            throw EvaluationFileError(file: file.path, line: line, reason: "index \(cells["index"]!.debugDescription) is not an integer")
        }
        // model_vqa_mmbench.py: hint, question, then each present option as "X. text".
        var question = cells["question"]!
        if let hint = present(cells, "hint") { question = hint + "\n" + question }
        // LLaVA's get_options stops at the first empty option.
        for letter in ["A", "B", "C", "D"] {
            guard let option = present(cells, letter) else { break }
            question += "\n" + letter + ". " + option
        }
        guard let image = Data(base64Encoded: cells["image"]!, options: .ignoreUnknownCharacters), !image.isEmpty else {
            throw EvaluationFileError(file: file.path, line: line, reason: "the image column is not base64")
        }
        return BenchmarkQuestion(
            id: .integer(index), text: question + "\n" + singlePredictionPrompt,
            image: .bytes(image, name: "\(file.lastPathComponent) index \(index)"), answersFilePrompt: question)
    }
}
