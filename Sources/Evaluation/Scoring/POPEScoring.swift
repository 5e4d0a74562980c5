import Foundation

/// POPE, as LLaVA's `llava/eval/eval_pope.py` scores it.
enum POPEScoring {
    /// "no" when the answer's first sentence (up to the first '.'), commas removed, split on
    /// spaces, holds the word `No`, `no` or `not`; "yes" otherwise (an empty answer too).
    static func readsAsYes(_ answer: String) -> Bool {
        let firstSentence = answer.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let words = firstSentence.replacingOccurrences(of: ",", with: "").split(separator: " ", omittingEmptySubsequences: false)
        return !words.contains { $0 == "No" || $0 == "no" || $0 == "not" }
    }

    /// Questions: LLaVA's `llava_pope_test.jsonl` (`question_id`, `category`). Annotations: the
    /// folder of `coco_pope_<category>.json` label files (one object a line, `label` yes/no),
    /// matched to that category's questions in the questions file's order, as the official
    /// script does. A label file whose category has no questions is skipped (a subset run).
    static func score(questions: URL, answers: URL, annotations: URL?) throws -> ScoreReport {
        guard let folder = annotations else {
            throw EvaluationFileError(file: questions.path, reason: "POPE needs --annotations: the folder of coco_pope_<category>.json label files")
        }
        let records = try readJSONRecords(questions)
        var idsByCategory: [String: [String]] = [:]
        for record in records { idsByCategory[try record.string("category"), default: []].append(try record.identifier("question_id")) }
        var sheet = try AnswerSheet(answers: answers, questionIds: Set(idsByCategory.values.joined()), questionsFile: questions)

        var metrics: [String: Double] = [:]
        var f1Scores: [Double] = []
        for category in idsByCategory.keys.sorted() {
            let ids = idsByCategory[category]!
            let labelFile = folder.appendingPathComponent("coco_pope_\(category).json")
            guard FileManager.default.fileExists(atPath: labelFile.path) else {
                throw EvaluationFileError(file: labelFile.path, reason: "missing: the labels of the \(ids.count) \"\(category)\" questions of \(questions.path)")
            }
            let labels = try readJSONRecords(labelFile, asJSONLines: true).map { record -> Bool in
                let label = try record.string("label")
                return label != "no"
            }
            guard labels.count == ids.count else {
                throw EvaluationFileError(file: labelFile.path, reason: "\(labels.count) labels for the \(ids.count) \"\(category)\" questions of \(questions.path)")
            }
            var truePositives = 0, falsePositives = 0, trueNegatives = 0, falseNegatives = 0, yesAnswers = 0
            for (id, labelIsYes) in zip(ids, labels) {
                // A missing answer is wrong: the opposite of the label.
                let predictsYes = sheet.text(for: id).map(readsAsYes) ?? !labelIsYes
                if predictsYes { yesAnswers += 1 }
                switch (predictsYes, labelIsYes) {
                case (true, true): truePositives += 1
                case (true, false): falsePositives += 1
                case (false, false): trueNegatives += 1
                case (false, true): falseNegatives += 1
                }
            }
            let precision = ratio(truePositives, truePositives + falsePositives)
            let recall = ratio(truePositives, truePositives + falseNegatives)
            let f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
            metrics["\(category).accuracy"] = ratio(truePositives + trueNegatives, ids.count)
            metrics["\(category).precision"] = precision
            metrics["\(category).recall"] = recall
            metrics["\(category).f1"] = f1
            metrics["\(category).yes_ratio"] = ratio(yesAnswers, ids.count)
            f1Scores.append(f1)
        }
        let meanF1 = f1Scores.isEmpty ? 0 : f1Scores.reduce(0, +) / Double(f1Scores.count)
        metrics["f1"] = meanF1
        return sheet.report(.pope, score: 100 * meanF1, metrics: metrics, questions: records.count)
    }

    private static func ratio(_ numerator: Int, _ denominator: Int) -> Double {
        denominator == 0 ? 0 : Double(numerator) / Double(denominator)
    }
}
