import Foundation

/// Does the ranking keep the right patches? For each drop, the share of a question's object
/// patches (the image tokens its answer depends on) that survive.
public enum KeptTokenRecall {
    /// Per drop: |kept ∩ objects| / |objects|; nil for a question without object patches.
    public static func recall(kept perDrop: [[Int]], objectPatches: Set<Int>) -> [Double]? {
        guard !objectPatches.isEmpty else { return nil }
        return perDrop.map { kept in Double(objectPatches.intersection(kept).count) / Double(objectPatches.count) }
    }

    /// Mean recall per drop over the answers of `answers` (their `kept_image_tokens` metadata,
    /// written by `pdrop eval run`) against `patches` (one JSON object a line: `question_id`,
    /// `patches`, as `pdrop data` writes them). Questions without object patches are left out.
    public static func meanRecall(answers: URL, patches: URL) throws -> (perDrop: [Double], questions: Int) {
        let objects = try objectPatches(patches)
        var sums: [Double] = [], questions = 0
        for (line, record) in try readAnswers(from: answers).enumerated() {
            guard let kept = keptImageTokens(record) else {
                throw EvaluationFileError(file: answers.path, line: line + 1, reason: "no kept_image_tokens in the metadata (answers of pdrop eval run carry them)")
            }
            guard let patches = objects[record.questionId] else {
                throw EvaluationFileError(file: patches.path, reason: "no patches for question \(record.questionId)")
            }
            guard let recall = recall(kept: kept, objectPatches: patches) else { continue }
            if sums.isEmpty { sums = Array(repeating: 0, count: recall.count) }
            guard recall.count == sums.count else {
                throw EvaluationFileError(file: answers.path, line: line + 1, reason: "\(recall.count) drops where earlier answers had \(sums.count)")
            }
            for (drop, value) in recall.enumerated() { sums[drop] += value }
            questions += 1
        }
        return (sums.map { $0 / Double(max(questions, 1)) }, questions)
    }

    /// Question id → the patches its objects cover, from `pdrop data`'s patches.jsonl.
    public static func objectPatches(_ file: URL) throws -> [QuestionID: Set<Int>] {
        struct PatchLine: Decodable {
            let questionId: QuestionID
            let patches: [Int]
            enum CodingKeys: String, CodingKey { case questionId = "question_id", patches }
        }
        return Dictionary(try readJSONLines(PatchLine.self, from: file).map { ($0.questionId, Set($0.patches)) }, uniquingKeysWith: { first, _ in first })
    }

    /// An answer's kept image tokens per drop (its `kept_image_tokens` metadata), nil without them.
    public static func keptImageTokens(_ record: AnswerRecord) -> [[Int]]? {
        guard case let .array(drops) = record.metadata["kept_image_tokens"] else { return nil }
        return drops.map { drop in
            guard case let .array(indices) = drop else { return [] }
            return indices.compactMap { if case let .number(value) = $0 { return Int(value) } else { return nil } }
        }
    }
}
