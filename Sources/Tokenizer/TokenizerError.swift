import Foundation

/// Why a tokenizer file could not be loaded. Every case names the file and, where it applies,
/// the JSON path of the offending value (for example `normalizer.normalizers[1]`), so a bad
/// checkpoint can be fixed without a debugger.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read at all.
    case unreadableFile(file: String, reason: String)
    /// The bytes are not JSON; `line` and `column` are 1-based.
    case invalidJSON(file: String, line: Int, column: Int, reason: String)
    /// A required key is absent (or `null` where a value is required).
    case missingKey(file: String, path: String)
    /// A value has the wrong JSON type.
    case wrongType(file: String, path: String, expected: String, found: String)
    /// A stage (`normalizer`, `pre_tokenizer`, `model`, `decoder`, `post_processor`) names a
    /// `"type"` this implementation does not know.
    case unknownStageType(file: String, path: String, type: String)
    /// A value has the right type but cannot be used (token missing from the vocabulary,
    /// malformed merge, invalid regular expression, ...).
    case invalidValue(file: String, path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadableFile(file, reason):
            return "cannot read tokenizer file \(file): \(reason)"
        case let .invalidJSON(file, line, column, reason):
            return "\(file) is not valid JSON (line \(line), column \(column)): \(reason)"
        case let .missingKey(file, path):
            return "\(file): missing required key \"\(path)\""
        case let .wrongType(file, path, expected, found):
            return "\(file): \"\(path)\" should be \(expected), found \(found)"
        case let .unknownStageType(file, path, type):
            return "\(file): unknown stage type \"\(type)\" at \"\(path)\""
        case let .invalidValue(file, path, reason):
            return "\(file): invalid value at \"\(path)\": \(reason)"
        }
    }
}
