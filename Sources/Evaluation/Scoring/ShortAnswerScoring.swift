import Foundation

/// The benchmarks scored question by question against reference answers: VQAv2, TextVQA and
/// VizWiz (VQA accuracy), GQA (exact match), SEED (option letter), DocVQA and InfoVQA (ANLS),
/// ChartQA (relaxed accuracy) and OCRBench (substring).
enum ShortAnswerScoring {
    /// Questions: a JSON-lines (or JSON) file with `question_id` (VizWiz: or `image`). Reference
    /// answers come from `annotations` when given, else from the questions themselves, and are
    /// found by question id (`question_id`, `questionId` or `id`), else by `image`:
    /// - answers: `answers` (strings, or objects with `answer`: VQAv2, VizWiz), `answer` or `label`;
    /// - accepted files: JSON lines, a JSON array (VizWiz, OCRBench), an object with its array
    ///   under `data` (TextVQA, DocVQA, InfoVQA), `annotations` (VQAv2) or `questions` (SEED),
    ///   or an object keyed by question id (GQA's questions JSON).
    static func score(_ benchmark: EvaluationBenchmark, questions: URL, answers: URL, annotations: URL?) throws -> ScoreReport {
        let questionRecords = try readJSONRecords(questions)
        let references = try annotations.map { try readJSONRecords($0) } ?? questionRecords
        var referenceById: [String: JSONRecord] = [:]
        for record in references {
            for key in ["question_id", "questionId", "id", "image"] {
                if let value = record[key].flatMap(identifierText), referenceById[value] == nil { referenceById[value] = record }
            }
        }
        var items: [(id: String, reference: JSONRecord, answers: [String])] = []
        for record in questionRecords {
            let id = try record.identifier("question_id", "questionId", "id", "image")
            let image = record["image"].flatMap(identifierText)
            guard let reference = referenceById[id] ?? image.flatMap({ referenceById[$0] }) else {
                throw record.error("question \(id) has no reference answers in \((annotations ?? questions).path)")
            }
            // LLaVA reports SEED on its image questions only.
            if benchmark == .seed, let type = reference["data_type"].flatMap(identifierText), type != "image" { continue }
            guard let answers = stringList(reference["answers"]) ?? stringList(reference["answer"]) ?? stringList(reference["label"]), !answers.isEmpty else {
                throw reference.error("no reference answers (\"answers\", \"answer\" or \"label\")")
            }
            items.append((id, reference, answers))
        }
        var sheet = try AnswerSheet(answers: answers, questionIds: Set(questionRecords.compactMap { try? $0.identifier("question_id", "questionId", "id", "image") }), questionsFile: questions)

        var overall = Tally()
        var byCategory: [String: Tally] = [:]
        for item in items {
            let prediction = sheet.text(for: item.id) ?? ""
            let credit = Self.credit(benchmark, prediction: prediction, answers: item.answers, reference: item.reference)
            overall.add(credit)
            let categoryKey = benchmark == .seed ? "question_type_id" : "type"
            if let category = item.reference[categoryKey].flatMap(identifierText) { byCategory[category, default: Tally()].add(credit) }
        }
        var metrics = ["accuracy": overall.percent]
        for (category, tally) in byCategory {
            metrics["category.\(category)"] = benchmark == .ocrbench ? tally.correct : tally.percent
        }
        // OCRBench reports the number of right answers (out of 1000); the others a percentage.
        let headline = benchmark == .ocrbench ? overall.correct : overall.percent
        return sheet.report(benchmark, score: headline, metrics: metrics, questions: items.count)
    }

    /// The credit (0...1) one prediction earns under `benchmark`'s rule.
    static func credit(_ benchmark: EvaluationBenchmark, prediction: String, answers: [String], reference: JSONRecord) -> Double {
        switch benchmark {
        case .vqav2, .textvqa, .vizwiz: return EvalAIAnswerProcessor.vqaAccuracy(prediction: prediction, humanAnswers: answers)
        case .gqa: return answers.contains(gqaPrediction(prediction)) ? 1 : 0
        case .seed: return answers.contains(prediction) ? 1 : 0
        case .docvqa, .infovqa: return answers.map { anls(prediction: prediction, answer: $0) }.max() ?? 0
        case .chartqa: return answers.contains { relaxedMatch(prediction: prediction, target: $0) } ? 1 : 0
        case .ocrbench:
            let isHandwrittenMath = reference["dataset_name"] == .string("HME100k")
            return answers.contains { ocrBenchMatch(prediction: prediction, answer: $0, isHandwrittenMath: isHandwrittenMath) } ? 1 : 0
        case .pope, .scienceqa, .mmbench, .mme: return 0
        }
    }

    /// LLaVA's `convert_gqa_for_eval.py`: trailing periods stripped, lower-cased; then GQA's
    /// `eval.py` compares it with `answer` exactly.
    static func gqaPrediction(_ prediction: String) -> String {
        var text = Substring(prediction)
        while text.last == "." { text = text.dropLast() }
        return text.lowercased()
    }

    /// Average Normalized Levenshtein Similarity of one answer (DocVQA's definition): both
    /// lower-cased and stripped, 1 - distance / longer length, or 0 when that normalised distance
    /// is 0.5 or more. (m4c's STVQA evaluator keeps exactly 0.5; DocVQA's paper and server do not.)
    static func anls(prediction: String, answer: String) -> Double {
        let a = Array(prediction.lowercased().trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars)
        let b = Array(answer.lowercased().trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars)
        let longer = max(a.count, b.count)
        guard longer > 0 else { return 1 }
        let normalizedDistance = Double(levenshteinDistance(a, b)) / Double(longer)
        return normalizedDistance < 0.5 ? 1 - normalizedDistance : 0
    }

    static func levenshteinDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        var previous = Array(0...b.count)
        for (i, scalarOfA) in a.enumerated() {
            var current = [i + 1]
            for (j, scalarOfB) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (scalarOfA == scalarOfB ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// ChartQA's relaxed accuracy (pix2struct's `relaxed_correctness`): when both read as numbers
    /// (a trailing '%' divides by 100) and the target is not 0, within 5% of the target;
    /// otherwise the same text, case aside.
    static func relaxedMatch(prediction: String, target: String) -> Bool {
        func number(_ text: String) -> Double? {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.hasSuffix("%") { return Double(trimmed.dropLast()).map { $0 / 100 } }
            return Double(trimmed)
        }
        if let predicted = number(prediction), let expected = number(target), expected != 0 {
            return abs(predicted - expected) / abs(expected) <= 0.05
        }
        return prediction.lowercased() == target.lowercased()
    }

    /// OCRBench's rule: the answer (lower-cased, stripped, newlines as spaces) appears in the
    /// prediction treated the same way; for HME100k (handwritten formulas) case is kept and all
    /// spaces are removed from both instead.
    static func ocrBenchMatch(prediction: String, answer: String, isHandwrittenMath: Bool) -> Bool {
        func prepare(_ text: String) -> String {
            let stripped = text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: " ")
            return isHandwrittenMath ? stripped.replacingOccurrences(of: " ", with: "") : stripped.lowercased()
        }
        return prepare(prediction).contains(prepare(answer))
    }
}
