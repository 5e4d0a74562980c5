import Foundation

/// MMBench with circular evaluation, as MMBench's evaluation (`can_infer_option`,
/// `can_infer_text`, circular groups) scores it, without the GPT fallback for answers that
/// name no option.
enum MMBenchScoring {
    /// Rows with an index at or above this are rotations of question `index % rotationBase`.
    static let rotationBase = 1_000_000

    /// The option an answer names: `canInferOption`, else `canInferText`; nil when neither can.
    static func inferOption(_ answer: String, choices: [(letter: String, text: String)]) -> String? {
        canInferOption(answer, letters: choices.map(\.letter)) ?? canInferText(answer, choices: choices)
    }

    /// MMBench's `can_infer_option`: the answer, with `.()[],:;!*#{}` turned into spaces, split
    /// into words; exactly one of the row's option letters must be a word, and it is the answer.
    /// A refusal phrase gives "Z" (never right); so does "Z" as a word when no letter is.
    static func canInferOption(_ answer: String, letters: [String]) -> String? {
        if answer.contains("Failed to obtain answer via API") { return nil }
        let refusals = ["Sorry, I can't help with images of people yet.", "I can't process this file.",
                        "I'm sorry, but without the image provided", "Cannot determine the answer"]
        if refusals.contains(where: answer.contains) { return "Z" }
        var spaced = answer
        for character in ".()[],:;!*#{}" { spaced = spaced.replacingOccurrences(of: String(character), with: " ") }
        // Python's str.split(): runs of whitespace, no empty words.
        let words = Set(spaced.split(whereSeparator: { $0.isWhitespace }).map(String.init))
        let named = letters.filter(words.contains)
        if named.count == 1 { return named[0] }
        if named.isEmpty && words.contains("Z") { return "Z" }
        return nil
    }

    /// MMBench's `can_infer_text`: the one option whose lower-cased text the lower-cased answer contains.
    static func canInferText(_ answer: String, choices: [(letter: String, text: String)]) -> String? {
        let lowered = answer.lowercased()
        let contained = choices.filter { lowered.contains($0.text.lowercased()) }
        return contained.count == 1 ? contained[0].letter : nil
    }

    /// Questions: the official TSV (`index, question, A, B, C, D, answer`, maybe `category`);
    /// option cells pandas reads as missing are not options. Headline: circular accuracy (a base
    /// question counts only if it and every rotation are right); also single-pass accuracy (rows
    /// below 1,000,000) and, when the TSV has categories, circular accuracy per category.
    static func score(questions: URL, answers: URL) throws -> ScoreReport {
        let table = try TabSeparatedTable(contentsOf: questions)
        let letters = table.header.filter { $0.count == 1 && $0.first!.isUppercase && $0.first!.isASCII }
        for column in ["index", "answer"] where !table.header.contains(column) {
            throw EvaluationFileError(file: questions.path, line: 1, reason: "no \"\(column)\" column")
        }
        struct Row { let index: Int; let answer: String; let category: String?; let choices: [(letter: String, text: String)] }
        let rows = try table.rows.map { line, cells -> Row in
            guard let index = Int(cells["index"]!) else {
                throw EvaluationFileError(file: questions.path, line: line, reason: "index \"\(cells["index"]!)\" is not an integer")
            }
            let choices = letters.compactMap { letter in
                cells[letter].flatMap { pandasMissingValues.contains($0) ? nil : (letter, $0) }
            }
            return Row(index: index, answer: cells["answer"]!, category: cells["category"], choices: choices)
        }
        var sheet = try AnswerSheet(answers: answers, questionIds: Set(rows.map { String($0.index) }), questionsFile: questions)

        var groupIsCorrect: [Int: Bool] = [:]
        var categoryOfGroup: [Int: String] = [:]
        var singlePass = Tally()
        for row in rows {
            let isCorrect = sheet.text(for: String(row.index)).flatMap { inferOption($0, choices: row.choices) } == row.answer
            let group = row.index % rotationBase
            groupIsCorrect[group] = (groupIsCorrect[group] ?? true) && isCorrect
            if row.index < rotationBase {
                singlePass.add(isCorrect)
                if let category = row.category { categoryOfGroup[group] = category }
            }
        }
        var circular = Tally()
        var byCategory: [String: Tally] = [:]
        for (group, isCorrect) in groupIsCorrect {
            circular.add(isCorrect)
            if let category = categoryOfGroup[group] { byCategory[category, default: Tally()].add(isCorrect) }
        }
        var metrics = ["circular_accuracy": circular.percent, "single_pass_accuracy": singlePass.percent]
        for (category, tally) in byCategory { metrics["category.\(category)"] = tally.percent }
        return sheet.report(.mmbench, score: circular.percent, metrics: metrics, questions: rows.count)
    }
}
