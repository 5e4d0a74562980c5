import Engine
import Foundation
import Models
import TokenReduction

/// One way of answering: a name (used in file names and reports) and the reduction it asks for.
public struct EvaluationSetting: Equatable, Sendable {
    public let name: String
    public let request: ReductionRequest

    public init(name: String, request: ReductionRequest) throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw EvaluationSettingError.badName(name)
        }
        self.name = name
        self.request = request
    }
}

public enum EvaluationSettingError: Error, Equatable, CustomStringConvertible {
    case badName(String)
    case duplicateName(String)
    case settingsDiffer(file: String, questionId: String, recorded: String, requested: String)
    case badChunk(count: Int, index: Int)

    public var description: String {
        switch self {
        case let .badName(name):
            return "setting name \(name.debugDescription) must be letters, digits, '-', '_' or '.' (it names the answers file)"
        case let .duplicateName(name): return "two settings are named \(name.debugDescription)"
        case let .settingsDiffer(file, questionId, recorded, requested):
            return "\(file) was answered with another setting (question \(questionId): \(recorded), now \(requested)); use another answers file or the same settings"
        case let .badChunk(count, index):
            return "chunk index \(index) is outside 0..<\(count) chunks"
        }
    }
}

/// LLaVA's `get_chunk`: `count` chunks of ceil(n / count) questions, the `index`-th of them.
public func chunk<T>(_ items: [T], count: Int, index: Int) throws -> ArraySlice<T> {
    guard count >= 1, (0..<count).contains(index) else { throw EvaluationSettingError.badChunk(count: count, index: index) }
    let size = (items.count + count - 1) / count
    let start = min(items.count, index * size)
    return items[start..<min(items.count, start + size)]
}

/// The answers file of one setting: `answers` itself for a single unnamed setting, else
/// `answers` with the setting's name before its extension (`out.jsonl` → `out.pdrop128.jsonl`).
public func answersFile(_ answers: URL, setting: String?) -> URL {
    guard let setting else { return answers }
    let stem = answers.deletingPathExtension().lastPathComponent
    let ext = answers.pathExtension.isEmpty ? "jsonl" : answers.pathExtension
    return answers.deletingLastPathComponent().appendingPathComponent("\(stem).\(setting).\(ext)")
}

/// Answers questions with a session under several settings, appending each answer whole to its
/// setting's file as soon as it exists, so that an interrupted run loses nothing and a rerun
/// continues where it stopped. The image and the vision tower run once per question, whatever
/// the number of settings.
public struct EvaluationRun {
    public let session: InferenceSession
    public let settings: [EvaluationSetting]
    /// One file per setting, in the order of `settings`.
    public let files: [URL]
    public let maxNewTokens: Int
    public let modelId: String

    public init(session: InferenceSession, settings: [EvaluationSetting], files: [URL], maxNewTokens: Int = 128, modelId: String) throws {
        precondition(settings.count == files.count, "one answers file per setting")
        var names = Set<String>()
        for setting in settings where !names.insert(setting.name).inserted { throw EvaluationSettingError.duplicateName(setting.name) }
        self.session = session
        self.settings = settings
        self.files = files
        self.maxNewTokens = maxNewTokens
        self.modelId = modelId
    }

    /// What a run did.
    public struct Summary: Equatable, Sendable {
        public var answered = 0
        /// Question × setting pairs found already answered in the files.
        public var resumed = 0

        public init(answered: Int = 0, resumed: Int = 0) {
            self.answered = answered
            self.resumed = resumed
        }
    }

    /// Answers `questions` (in order) under every setting not yet answered in its file.
    /// `progress(done, total)` is called after each question.
    public func answer(_ questions: [BenchmarkQuestion], progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        var answered = try files.enumerated().map { index, file in
            try answeredQuestions(in: file, setting: settings[index])
        }
        var summary = Summary()
        for (done, question) in questions.enumerated() {
            let pending = settings.indices.filter { !answered[$0].contains(question.id) }
            summary.resumed += settings.count - pending.count
            guard !pending.isEmpty else { progress(done + 1, questions.count); continue }
            let prompt = try session.prepare(.messages([ChatMessage(
                role: .user, parts: (question.image.map { [.image($0)] } ?? []) + [.text(question.text)])]))
            for index in pending {
                let record = try answer(question, prompt: prompt, setting: settings[index])
                try appendAnswer(record, to: files[index])
                answered[index].insert(question.id)
                summary.answered += 1
            }
            progress(done + 1, questions.count)
        }
        return summary
    }

    /// One answer under one setting: greedy, text stripped as LLaVA's scripts do, and what it cost.
    func answer(_ question: BenchmarkQuestion, prompt: PreparedPrompt, setting: EvaluationSetting) throws -> AnswerRecord {
        let reducer = try session.reducer(setting.request, for: prompt)
        let result = try session.generate(prompt, reducer: reducer, maxNewTokens: maxNewTokens)
        let flops = session.flops(prompt, reducer: reducer)
        let layers = Double(max(result.tokensPerLayer.count, 1))
        let textTokens = prompt.inputIds.count - prompt.imageTokens
        let averageImageTokens = Double(result.tokensPerLayer.reduce(0) { $0 + $1 - textTokens }) / layers
        let metadata: [String: JSONValue] = [
            "setting": .string(setting.name),
            "method": .string(setting.request.kind.rawValue),
            "reduction": .string(describe(reducer)),
            "image_tokens": .number(Double(prompt.imageTokens)),
            "average_image_tokens_per_layer": .number(averageImageTokens),
            "paper_image_tflops": .number(flops.paperImageTeraFLOPs),
            "exact_prefill_flops": .number(2 * flops.exactTotal),
            "vision_seconds": .number(prompt.visionSeconds),
            "prefill_seconds": .number(result.prefillSeconds),
            "reduction_request": .string(settingDescription(setting)),
            // Per drop, the first image's kept tokens (indices into its block): for recall studies.
            "kept_image_tokens": .array(result.keptImageTokens.map { drop in
                .array((drop.first ?? []).map { .number(Double($0)) })
            }),
        ]
        return AnswerRecord(
            questionId: question.id, prompt: question.answersFilePrompt,
            text: (result.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines),
            answerId: "\(setting.name)-\(question.id)", modelId: modelId, metadata: metadata)
    }

    /// The ids already answered in `file` (after cutting a last line a crash left unfinished),
    /// refusing a file answered under another setting.
    func answeredQuestions(in file: URL, setting: EvaluationSetting) throws -> Set<QuestionID> {
        guard FileManager.default.fileExists(atPath: file.path) else { return [] }
        try dropUnfinishedLastLine(file)
        let records = try readAnswers(from: file)
        let requested = settingDescription(setting)
        for record in records where record.metadata["reduction_request"] != .string(requested) {
            let recorded: String
            if case let .string(text) = record.metadata["reduction_request"] { recorded = text } else { recorded = "none recorded" }
            throw EvaluationSettingError.settingsDiffer(
                file: file.path, questionId: record.questionId.description, recorded: recorded, requested: requested)
        }
        return Set(records.map(\.questionId))
    }

    func appendAnswer(_ record: AnswerRecord, to file: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(record)
        line.append(UInt8(ascii: "\n"))
        if !FileManager.default.fileExists(atPath: file.path) {
            guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
                throw EvaluationFileError(file: file.path, reason: "cannot create the answers file")
            }
        }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        try handle.seekToEnd()
        // One write of the whole line: a kill leaves whole lines, or one unfinished last line.
        try handle.write(contentsOf: line)
    }

    /// The setting's reduction request as recorded in its answers (what a resume must match).
    func settingDescription(_ setting: EvaluationSetting) -> String {
        "\(setting.name): \(setting.request)"
    }
}

/// Cuts an unfinished last line (no newline: a write a kill interrupted) from a JSON-lines file.
func dropUnfinishedLastLine(_ file: URL) throws {
    let data = try Data(contentsOf: file)
    guard let last = data.last, last != UInt8(ascii: "\n") else { return }
    let keep = data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
    let handle = try FileHandle(forWritingTo: file)
    defer { try? handle.close() }
    try handle.truncate(atOffset: UInt64(keep))
}

/// Joins chunk answers files, in the order given, into the file a single run would have written;
/// a question answered in two chunks is an error.
public func mergeAnswers(_ chunks: [URL], into output: URL) throws -> Int {
    var seen = Set<QuestionID>()
    var merged = Data()
    for file in chunks {
        for (line, record) in try readAnswers(from: file).enumerated() {
            guard seen.insert(record.questionId).inserted else {
                throw EvaluationFileError(file: file.path, line: line + 1, reason: "question \(record.questionId) is also answered in an earlier chunk")
            }
        }
        var data = try Data(contentsOf: file)
        if let last = data.last, last != UInt8(ascii: "\n") { data.append(UInt8(ascii: "\n")) }
        merged.append(data)
    }
    try merged.write(to: output, options: .atomic)
    return seen.count
}
