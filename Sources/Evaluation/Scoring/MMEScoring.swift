import Foundation

/// MME, as its `eval_tool/calculation.py` scores it, with LLaVA's
/// `convert_answer_to_mme.py` to put each answer beside its ground-truth line.
enum MMEScoring {
    static let perception = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"]
    static let cognition = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]

    /// calculation.py's `parse_pred_ans` on the lower-cased answer: "yes"/"no" as they are; else
    /// "yes" if its first four characters hold "yes", "no" if they hold "no", otherwise nil ("other").
    static func parseYesNo(_ answer: String) -> String? {
        let lowered = answer.lowercased()
        if lowered == "yes" || lowered == "no" { return lowered }
        let prefix = String(lowered.unicodeScalars.prefix(4))
        if prefix.contains("yes") { return "yes" }
        if prefix.contains("no") { return "no" }
        return nil
    }

    /// The question as the ground truth writes it, the way convert_answer_to_mme.py rebuilds it
    /// from LLaVA's prompt: without "Answer the question using a single word or phrase.", ending
    /// in " Please answer yes or no."; the second candidate has the two spaces some GT lines have.
    static func groundTruthQuestions(for prompt: String) -> [String] {
        var question = prompt
        if question.contains("Answer the question using a single word or phrase.") {
            question = question.replacingOccurrences(of: "Answer the question using a single word or phrase.", with: "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard !question.contains("Please answer yes or no.") else { return [question] }
        return [question + " Please answer yes or no.", question + "  Please answer yes or no."]
    }

    /// Questions: LLaVA's `llava_mme.jsonl` (`question_id` "category/.../image.jpg", shared by an
    /// image's two questions, and `text`); an answer is matched by its id and its `prompt`.
    /// Annotations: a folder of `<category>.txt` ground-truth files with lines
    /// `image\tquestion\tanswer` (MME's `eval_tool/Your_Results` layout; that subfolder itself is
    /// also looked for). Per category: acc over questions and acc+ over images (both questions
    /// right), each in %, score = acc + acc+. Headline: perception, the sum over its 10 categories.
    static func score(questions: URL, answers: URL, annotations: URL?) throws -> ScoreReport {
        guard var folder = annotations else {
            throw EvaluationFileError(file: questions.path, reason: "MME needs --annotations: the folder of <category>.txt ground-truth files (eval_tool/Your_Results)")
        }
        let nested = folder.appendingPathComponent("eval_tool/Your_Results")
        if FileManager.default.fileExists(atPath: nested.path) { folder = nested }
        let categoryFiles = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".txt") }.sorted()
        guard !categoryFiles.isEmpty else { throw EvaluationFileError(file: folder.path, reason: "no <category>.txt ground-truth files") }

        struct GroundTruthLine { let category: String; let image: String; let question: String; let answer: String }
        var lines: [GroundTruthLine] = []
        var lineByKey: [String: Int] = [:]
        func key(_ category: String, _ image: String, _ question: String) -> String {
            "\(category)\t\((image as NSString).deletingPathExtension)\t\(question)"
        }
        for file in categoryFiles {
            let category = String(file.dropLast(4)), url = folder.appendingPathComponent(file)
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw EvaluationFileError(file: url.path, reason: "cannot read as UTF-8 text") }
            for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                guard fields.count >= 3, ["yes", "no"].contains(fields[2].lowercased()) else {
                    throw EvaluationFileError(file: url.path, line: index + 1, reason: "expected image<TAB>question<TAB>yes|no")
                }
                lineByKey[key(category, fields[0], fields[1])] = lines.count
                lines.append(GroundTruthLine(category: category, image: fields[0], question: fields[1], answer: fields[2].lowercased()))
            }
        }

        var questionIdOfLine: [Int: String] = [:]
        for record in try readJSONRecords(questions) {
            let id = try record.identifier("question_id")
            let path = id.split(separator: "/").map(String.init)
            let category = (try? record.string("category")) ?? path.first ?? ""
            let prompt = try record.string("text")
            guard let line = groundTruthQuestions(for: prompt).lazy.compactMap({ lineByKey[key(category, path.last ?? id, $0)] }).first else {
                throw record.error("question \(id) has no ground-truth line in \(folder.path)/\(category).txt (matched by image and question)")
            }
            questionIdOfLine[line] = AnswerSheet.questionKey(id, prompt: prompt)
        }
        var sheet = try AnswerSheet(answers: answers, questionIds: Set(questionIdOfLine.values), questionsFile: questions, keyedByPrompt: true)

        var metrics: [String: Double] = [:]
        var scoreByCategory: [String: Double] = [:]
        for category in Set(lines.map(\.category)) {
            var questionTally = Tally()
            var imageIsCorrect: [String: Bool] = [:]
            for (index, line) in lines.enumerated() where line.category == category {
                let answer = questionIdOfLine[index].flatMap { sheet.text(for: $0) } ?? ""
                if questionIdOfLine[index] == nil { sheet.recordUnanswered("\(category)/\(line.image): \(line.question)") }
                let isCorrect = parseYesNo(answer) == line.answer
                questionTally.add(isCorrect)
                imageIsCorrect[line.image] = (imageIsCorrect[line.image] ?? true) && isCorrect
            }
            var imageTally = Tally()
            for isCorrect in imageIsCorrect.values { imageTally.add(isCorrect) }
            metrics["\(category).acc"] = questionTally.percent
            metrics["\(category).acc_plus"] = imageTally.percent
            scoreByCategory[category] = questionTally.percent + imageTally.percent
            metrics["category.\(category)"] = scoreByCategory[category]
        }
        let perceptionScore = perception.compactMap { scoreByCategory[$0] }.reduce(0, +)
        let cognitionScore = cognition.compactMap { scoreByCategory[$0] }.reduce(0, +)
        metrics["perception"] = perceptionScore
        metrics["cognition"] = cognitionScore
        metrics["total"] = perceptionScore + cognitionScore
        return sheet.report(.mme, score: perceptionScore, metrics: metrics, questions: lines.count)
    }
}
