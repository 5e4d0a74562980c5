import FileAccess
import Foundation

/// A question's id as benchmark files give it: an integer (POPE, MMBench, TextVQA) or a string
/// (ScienceQA, SEED). Answers are matched to questions by it.
public enum QuestionID: Hashable, Codable, Sendable, CustomStringConvertible {
    case integer(Int)
    case string(String)

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .integer(value): try container.encode(value)
        case let .string(value): try container.encode(value)
        }
    }

    public var description: String {
        switch self {
        case let .integer(value): return String(value)
        case let .string(value): return value
        }
    }
}

/// Any JSON value (an answer's `metadata`).
public enum JSONValue: Equatable, Codable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(value): try container.encode(value)
        case let .number(value): try container.encode(value)
        case let .string(value): try container.encode(value)
        case let .array(value): try container.encode(value)
        case let .object(value): try container.encode(value)
        }
    }
}

/// One line of a LLaVA answers file, as `model_vqa_loader.py` writes it.
public struct AnswerRecord: Codable, Equatable, Sendable {
    public var questionId: QuestionID
    public var prompt: String
    public var text: String
    public var answerId: String
    public var modelId: String
    public var metadata: [String: JSONValue]

    enum CodingKeys: String, CodingKey {
        case questionId = "question_id", prompt, text, answerId = "answer_id", modelId = "model_id", metadata
    }

    public init(questionId: QuestionID, prompt: String, text: String, answerId: String, modelId: String, metadata: [String: JSONValue] = [:]) {
        self.questionId = questionId
        self.prompt = prompt
        self.text = text
        self.answerId = answerId
        self.modelId = modelId
        self.metadata = metadata
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        questionId = try c.decode(QuestionID.self, forKey: .questionId)
        text = try c.decode(String.self, forKey: .text)
        prompt = try c.decodeIfPresent(String.self, forKey: .prompt) ?? ""
        answerId = try c.decodeIfPresent(String.self, forKey: .answerId) ?? ""
        modelId = try c.decodeIfPresent(String.self, forKey: .modelId) ?? ""
        metadata = try c.decodeIfPresent([String: JSONValue].self, forKey: .metadata) ?? [:]
    }
}

/// A line of a JSON-lines file that is not what it should be, named by file and line.
public struct EvaluationFileError: Error, Equatable, CustomStringConvertible {
    public let file: String
    /// 1-based; 0 when the error is about the whole file.
    public let line: Int
    public let reason: String

    public init(file: String, line: Int = 0, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}

/// Reads a JSON-lines file into `T`s (blank lines skipped); a bad line names the file and line.
public func readJSONLines<T: Decodable>(_ type: T.Type, from url: URL) throws -> [T] {
    try readNumberedJSONLines(type, from: url).map(\.value)
}

/// `readJSONLines` with each record's 1-based line number.
func readNumberedJSONLines<T: Decodable>(_ type: T.Type, from url: URL) throws -> [(line: Int, value: T)] {
    let data: Data
    do { data = try readFileData(url) } catch {
        throw EvaluationFileError(file: url.path, reason: "cannot read: \(error.reason)")
    }
    let decoder = JSONDecoder()
    var records: [(line: Int, value: T)] = []
    for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { continue }
        do {
            records.append((index + 1, try decoder.decode(T.self, from: Data(line))))
        } catch {
            throw EvaluationFileError(file: url.path, line: index + 1, reason: "not a valid record: \(describeDecodingError(error))")
        }
    }
    return records
}

/// The answers of a LLaVA answers file.
public func readAnswers(from url: URL) throws -> [AnswerRecord] {
    try readJSONLines(AnswerRecord.self, from: url)
}
