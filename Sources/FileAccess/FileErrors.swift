import Foundation

#if canImport(Glibc)
import Glibc
#endif

// Foundation's errors in words: what every reader and writer of files in the project puts after
// the file's name. Never a Swift type name, an error domain or the file's contents.

/// Why a Foundation file operation (`Data(contentsOf:)`, `write(to:)`, `FileManager`) or a
/// `JSONSerialization` parse failed: "Is a directory", "No space left on device", "Permission
/// denied", or the parser's own account ("Unexpected end of file during JSON parse.").
public func describeFoundationError(_ error: Error) -> String {
    if error is DecodingError { return describeDecodingError(error) }
    let nsError = error as NSError
    // (On Linux the underlying error may be a Swift POSIXError rather than an NSError.)
    if let underlying = (nsError.userInfo[NSUnderlyingErrorKey] as? Error).map({ $0 as NSError }), underlying.domain == NSPOSIXErrorDomain {
        return systemMessage(underlying.code)
    }
    if nsError.domain == NSPOSIXErrorDomain { return systemMessage(nsError.code) }
    if let detail = nsError.userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
    if nsError.domain == NSCocoaErrorDomain {
        switch CocoaError.Code(rawValue: nsError.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return systemMessage(Int(ENOENT))
        case .fileReadNoPermission, .fileWriteNoPermission: return systemMessage(Int(EACCES))
        case .fileWriteOutOfSpace: return systemMessage(Int(ENOSPC))
        case .fileWriteVolumeReadOnly: return systemMessage(Int(EROFS))
        case .fileWriteFileExists: return systemMessage(Int(EEXIST))
        case .fileReadInapplicableStringEncoding, .fileWriteInapplicableStringEncoding: return "the text is not in the expected encoding"
        case .fileReadTooLarge: return "the file is too large"
        default: return "the operation failed (file error \(nsError.code))"
        }
    }
    if let location = foundationJSONErrorLocation(error) { return location.description }
    return "\(error)"
}

/// "'key.path' is not an integer", a readable account of a JSON decoding error, shared by every
/// reader of JSON files in the project. JSON types are named as JSON names them.
public func describeDecodingError(_ error: Error) -> String {
    // Foundation's JSON parser throws its own (internal) error for some malformed strings; a
    // decoder's own error (thrown by an `init(from:)`) describes itself.
    guard let decodingError = error as? DecodingError else { return describeFoundationError(error) }
    func path(_ context: DecodingError.Context) -> String {
        let text = context.codingPath.reduce(into: "") { text, key in  // "messages[0].content"
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text.isEmpty ? "top level" : "'\(text)'"
    }
    switch decodingError {
    case let .keyNotFound(key, context): return "missing key '\(key.stringValue)' in \(path(context))"
    case let .typeMismatch(type, context): return "\(path(context)) is not \(jsonTypeName(type))"
    case let .valueNotFound(type, context): return "\(path(context)) is null, expected \(jsonTypeName(type))"
    case let .dataCorrupted(context):
        if context.codingPath.isEmpty {
            let detail = context.underlyingError.map(describeFoundationError)
            return "not valid JSON" + (detail.map { ": \($0)" } ?? "")
        }
        return "\(path(context)): \(context.debugDescription)"
    @unknown default: return "not valid JSON"
    }
}

/// The first byte of `bytes` (0-based) that does not belong to a valid UTF-8 sequence, nil when
/// all of them do.
public func firstInvalidUTF8Offset<Bytes: Collection>(_ bytes: Bytes) -> Int? where Bytes.Element == UInt8 {
    var parser = Unicode.UTF8.ForwardParser()
    var iterator = bytes.makeIterator()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &iterator) {
        case .valid(let scalar): offset += scalar.count
        case .emptyInput: return nil
        case .error: return offset
        }
    }
}

/// The JSON name of a type a decoder expected ("an integer", "an array").
private func jsonTypeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Bool.Type: return "true or false"
    case is Int.Type, is Int64.Type, is Int32.Type, is Int16.Type, is Int8.Type, is UInt.Type, is UInt64.Type,
         is UInt32.Type, is UInt16.Type, is UInt8.Type:
        return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    default:
        let name = String(describing: type)
        if name.hasPrefix("Array<") { return "an array" }
        if name.hasPrefix("Dictionary<") { return "an object" }
        return "the expected kind of value"
    }
}

/// strerror's text for an errno value ("No such file or directory").
private func systemMessage(_ code: Int) -> String {
    String(cString: strerror(Int32(code)))
}

/// What Foundation's internal JSON parser error says, read by reflection: its case (only
/// "not valid UTF-8" is told apart) and the line and column it records.
private struct FoundationJSONErrorLocation: CustomStringConvertible {
    let invalidUTF8: Bool
    let line: Int?
    let column: Int?

    var description: String {
        let what = invalidUTF8 ? "a string is not valid UTF-8" : "not valid JSON"
        guard let line, let column else { return what }
        return "\(what) (line \(line), column \(column))"
    }
}

private func foundationJSONErrorLocation(_ error: Error) -> FoundationJSONErrorLocation? {
    guard String(reflecting: type(of: error)).hasPrefix("Foundation") else { return nil }
    let caseName = Mirror(reflecting: error).children.first?.label ?? ""
    func find(_ value: Any, depth: Int) -> (line: Int, column: Int)? {
        let children = Mirror(reflecting: value).children
        let fields = Dictionary(children.compactMap { child in child.label.map { ($0, child.value) } }, uniquingKeysWith: { first, _ in first })
        if let line = fields["line"] as? Int, let column = fields["column"] as? Int { return (line, column) }
        guard depth < 3 else { return nil }
        return children.lazy.compactMap { find($0.value, depth: depth + 1) }.first
    }
    let location = find(error, depth: 0)
    return FoundationJSONErrorLocation(invalidUTF8: caseName.contains("UTF8"), line: location?.line, column: location?.column)
}
