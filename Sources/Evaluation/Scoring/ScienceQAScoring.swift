import Foundation

/// ScienceQA, as LLaVA-1.5's `llava/eval/eval_science_qa.py` scores it.
enum ScienceQAScoring {
    static let optionLetters: [String] = ["A", "B", "C", "D", "E"]
    private static let answerSentence = try! NSRegularExpression(pattern: "The answer is ([A-Z]).")

    /// The option letter an answer gives, or nil ("FAILED" in the script, always wrong):
    /// the text itself when it is exactly one of A–E; else the letter of a leading "X. "; else
    /// the letter of "The answer is X." when that pattern (its final '.' matches any character)
    /// occurs exactly once; two or more occurrences fail.
    static func parseOption(_ answer: String) -> String? {
        if optionLetters.contains(answer) { return answer }
        let scalars = Array(answer.unicodeScalars)
        if scalars.count >= 3, optionLetters.contains(String(scalars[0])), scalars[1] == ".", scalars[2] == " " {
            return String(scalars[0])
        }
        let matches = answerSentence.matches(in: answer, range: NSRange(answer.startIndex..., in: answer))
        guard matches.count == 1, let range = Range(matches[0].range(at: 1), in: answer) else { return nil }
        return String(answer[range])
    }

    /// Questions: LLaVA's `llava_test_CQM-A.json` (`id`, optional `image`, `conversations` whose
    /// `gpt` turn is the answer letter). The headline is the accuracy on problems with an image
    /// (IMG). The script tells those by `<image>` in the answer's prompt; this uses the question's
    /// `image`, the same problems, so that a missing answer to one still counts against IMG.
    static func score(questions: URL, answers: URL) throws -> ScoreReport {
        let problems = try readJSONRecords(questions).map { record -> (id: String, hasImage: Bool, answer: String) in
            guard case let .array(turns)? = record["conversations"],
                  let gptTurn = turns.first(where: { if case let .object(turn) = $0 { return turn["from"] == .string("gpt") }; return false }),
                  case let .object(turn) = gptTurn, case let .string(letter)? = turn["value"] else {
                throw record.error("no \"gpt\" turn with the answer letter in \"conversations\"")
            }
            return (try record.identifier("id"), record["image"] != nil, letter)
        }
        var sheet = try AnswerSheet(answers: answers, questionIds: Set(problems.map(\.id)), questionsFile: questions)
        var all = Tally(), withImage = Tally()
        for problem in problems {
            let isCorrect = sheet.text(for: problem.id).flatMap(parseOption) == problem.answer
            all.add(isCorrect)
            if problem.hasImage { withImage.add(isCorrect) }
        }
        return sheet.report(.scienceqa, score: withImage.percent,
                            metrics: ["accuracy": all.percent, "img_accuracy": withImage.percent, "img_questions": Double(withImage.total)],
                            questions: problems.count)
    }
}
