import FileAccess
import Foundation

/// One JSON object of a benchmark file, with where it came from for error messages.
struct JSONRecord {
    let fields: [String: JSONValue]
    let file: String
    /// The 1-based line of a JSON-lines file, or the 1-based item of a JSON array (see `place`).
    let position: Int
    let isLine: Bool

    subscript(key: String) -> JSONValue? { fields[key] }

    /// A string field, or an error naming the file, the record and the key.
    func string(_ key: String) throws -> String {
        guard case let .string(value)? = fields[key] else { throw error("no string \"\(key)\"") }
        return value
    }

    /// An id field (integer or string) as text, or an error naming the key.
    func identifier(_ keys: String...) throws -> String {
        for key in keys { if let value = fields[key].flatMap(identifierText) { return value } }
        throw error("no \(keys.map { "\"\($0)\"" }.joined(separator: " or ")) id")
    }

    func error(_ reason: String) -> EvaluationFileError {
        isLine ? EvaluationFileError(file: file, line: position, reason: reason)
               : EvaluationFileError(file: file, reason: "item \(position): \(reason)")
    }
}

/// An id as answers files write it: integers without a decimal point, strings as they are.
func identifierText(_ value: JSONValue) -> String? {
    switch value {
    case let .string(text): return text
    case let .number(number) where number == number.rounded() && abs(number) < 1e15: return String(Int(number))
    default: return nil
    }
}

/// The strings of a JSON value: itself, or the strings of an array (objects give their `answer`).
func stringList(_ value: JSONValue?) -> [String]? {
    switch value {
    case let .string(text)?: return [text]
    case let .number(number)?: return [identifierText(.number(number)) ?? String(number)]
    case let .array(items)?:
        return items.compactMap { item in
            if case let .object(fields) = item { return stringList(fields["answer"])?.first }
            return stringList(item)?.first
        }
    default: return nil
    }
}

/// Reads a whole JSON document.
func readJSONDocument(_ url: URL) throws -> JSONValue {
    let data: Data
    do { data = try readFileData(url) } catch {
        throw EvaluationFileError(file: url.path, reason: "cannot read: \(error.reason)")
    }
    do { return try JSONDecoder().decode(JSONValue.self, from: data) } catch {
        throw EvaluationFileError(file: url.path, reason: describeDecodingError(error))
    }
}

/// The objects of a benchmark file: a JSON-lines file, a JSON array, or a JSON object that holds
/// its array under one of `arrayKeys` (TextVQA's and DocVQA's `data`, VQAv2's `annotations`,
/// SEED's `questions`), or maps ids to objects (GQA's questions), whose key becomes `idKey`.
/// `asJSONLines` reads a file as JSON lines whatever its extension (POPE's `.json` label files).
func readJSONRecords(_ url: URL, asJSONLines: Bool = false, arrayKeys: [String] = ["data", "annotations", "questions"], idKey: String = "question_id") throws -> [JSONRecord] {
    if asJSONLines || url.pathExtension == "jsonl" {
        let values = try readJSONLinesWithNumbers(url)
        return try values.map { line, value in
            guard case let .object(fields) = value else { throw EvaluationFileError(file: url.path, line: line, reason: "not a JSON object") }
            return JSONRecord(fields: fields, file: url.path, position: line, isLine: true)
        }
    }
    var document = try readJSONDocument(url)
    if case let .object(fields) = document {
        if let key = arrayKeys.first(where: { fields[$0] != nil }), let array = fields[key] {
            document = array
        } else {
            return try fields.keys.sorted().enumerated().map { index, key in
                guard case var .object(record)? = fields[key] else {
                    throw EvaluationFileError(file: url.path, reason: "\"\(key)\" is not a JSON object (expected an array under \(arrayKeys.joined(separator: "/")) or objects keyed by id)")
                }
                if record[idKey] == nil { record[idKey] = .string(key) }
                return JSONRecord(fields: record, file: url.path, position: index + 1, isLine: false)
            }
        }
    }
    guard case let .array(items) = document else { throw EvaluationFileError(file: url.path, reason: "expected a JSON array of objects") }
    return try items.enumerated().map { index, item in
        guard case let .object(fields) = item else { throw EvaluationFileError(file: url.path, reason: "item \(index + 1): not a JSON object") }
        return JSONRecord(fields: fields, file: url.path, position: index + 1, isLine: false)
    }
}

/// The JSON values of a JSON-lines file with their 1-based line numbers (blank lines skipped).
func readJSONLinesWithNumbers(_ url: URL) throws -> [(line: Int, value: JSONValue)] {
    try readNumberedJSONLines(JSONValue.self, from: url)
}

/// A tab-separated table as pandas' `read_csv(sep='\t')` reads it: a field that starts with a
/// double quote runs to the closing quote (tabs and newlines included, `""` is a quote).
struct TabSeparatedTable {
    let header: [String]
    /// Each row with the 1-based line it starts on.
    let rows: [(line: Int, cells: [String: String])]

    init(contentsOf url: URL) throws {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw EvaluationFileError(file: url.path, reason: "cannot read as UTF-8 text")
        }
        var records: [(line: Int, fields: [String])] = []
        var fields: [String] = [], field = "", inQuotes = false, atFieldStart = true
        var line = 1, recordLine = 1
        var characters = Array(text.unicodeScalars)[...]
        func endRecord() {
            fields.append(field)
            if !(fields.count == 1 && fields[0].isEmpty) { records.append((recordLine, fields)) }
            fields = []; field = ""; atFieldStart = true
        }
        while let scalar = characters.popFirst() {
            if inQuotes {
                if scalar == "\"" {
                    if characters.first == "\"" { characters.removeFirst(); field.unicodeScalars.append("\"") } else { inQuotes = false }
                } else {
                    if scalar == "\n" { line += 1 }
                    field.unicodeScalars.append(scalar)
                }
                continue
            }
            switch scalar {
            case "\"" where atFieldStart: inQuotes = true; atFieldStart = false
            case "\t": fields.append(field); field = ""; atFieldStart = true
            case "\n": endRecord(); line += 1; recordLine = line
            case "\r" where characters.first == "\n": continue
            default: field.unicodeScalars.append(scalar); atFieldStart = false
            }
        }
        if inQuotes { throw EvaluationFileError(file: url.path, line: recordLine, reason: "a quoted field is never closed") }
        if !field.isEmpty || !fields.isEmpty { endRecord() }
        guard let header = records.first?.fields else { throw EvaluationFileError(file: url.path, reason: "empty table") }
        self.header = header
        self.rows = try records.dropFirst().map { record in
            guard record.fields.count == header.count else {
                throw EvaluationFileError(file: url.path, line: record.line, reason: "\(record.fields.count) fields where the header has \(header.count)")
            }
            return (record.line, Dictionary(uniqueKeysWithValues: zip(header, record.fields)))
        }
    }
}

/// The cell texts pandas reads as missing (NaN) by default; MMBench drops such options.
let pandasMissingValues: Set<String> = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
