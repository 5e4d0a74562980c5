import Foundation

/// A parsed JSON document.
///
/// Own parser rather than `JSONSerialization`: Foundation turns objects into `[String: Any]`,
/// and Swift string keys compare by canonical equivalence, so vocabulary entries such as
/// U+03AF and U+1F77 (both "ί") would silently collapse into one. Objects here keep every
/// key, byte for byte, in file order.
enum JSONValue {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// The value stored under `key`, compared byte for byte; nil when absent or not an object.
    subscript(key: String) -> JSONValue? {
        guard case let .object(entries) = self else { return nil }
        return entries.first(where: { $0.key.utf8.elementsEqual(key.utf8) })?.value
    }
}

/// Recursive-descent parser over UTF-8 bytes. Nesting is bounded so hostile input cannot
/// exhaust the stack.
struct JSONParser {
    static let maximumDepth = 256

    static func parse(_ data: Data, file: String) throws -> JSONValue {
        try data.withUnsafeBytes { raw -> JSONValue in
            let bytes = raw.bindMemory(to: UInt8.self)
            var parser = JSONParser(bytes: bytes, file: file)
            // serde_json (what `tokenizers` uses) reads only valid UTF-8; checking it once up
            // front lets every string below be decoded without a per-string check.
            if let badOffset = firstInvalidUTF8Offset(bytes) {
                throw parser.failure("invalid UTF-8", at: badOffset)
            }
            parser.skipWhitespace()
            let value = try parser.parseValue(depth: 0)
            parser.skipWhitespace()
            if parser.index != bytes.count {
                throw parser.failure("unexpected content after the top-level value")
            }
            return value
        }
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private let file: String
    private var index = 0

    private init(bytes: UnsafeBufferPointer<UInt8>, file: String) {
        self.bytes = bytes
        self.file = file
    }

    private func failure(_ reason: String, at position: Int? = nil) -> TokenizerError {
        let end = min(position ?? index, bytes.count)
        var line = 1
        var lineStart = 0
        for offset in 0..<end where bytes[offset] == UInt8(ascii: "\n") {
            line += 1
            lineStart = offset + 1
        }
        return .invalidJSON(file: file, line: line, column: end - lineStart + 1, reason: reason)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard index < bytes.count else { throw failure("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw failure("unexpected character '\(printable(bytes[index]))'")
        }
    }

    private func printable(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "byte 0x" + String(byte, radix: 16, uppercase: true)
    }

    private mutating func expectLiteral(_ literal: StaticString) throws {
        let count = literal.utf8CodeUnitCount
        let start = literal.utf8Start
        guard index + count <= bytes.count else { throw failure("unexpected end of input") }
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw failure("invalid literal, expected \(literal)")
        }
        index += count
    }

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        guard depth <= Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth)") }
        index += 1
        var entries: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(entries)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw failure("expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw failure("expected ':'") }
            index += 1
            skipWhitespace()
            entries.append((key, try parseValue(depth: depth)))
            skipWhitespace()
            guard index < bytes.count else { throw failure("unexpected end of input in an object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(entries)
            } else {
                throw failure("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        guard depth <= Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth)") }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw failure("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            } else {
                throw failure("expected ',' or ']'")
            }
        }
    }

    private mutating func parseNumber() throws -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        let digitsStart = index
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        guard index > digitsStart else { throw failure("a number needs digits", at: start) }
        if bytes[digitsStart] == UInt8(ascii: "0"), index - digitsStart > 1 {
            throw failure("numbers cannot have leading zeros", at: start)
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            let fractionStart = index
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            guard index > fractionStart else { throw failure("a fraction needs digits", at: start) }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            let exponentStart = index
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            guard index > exponentStart else { throw failure("an exponent needs digits", at: start) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text) else { throw failure("number out of range", at: start) }
        return value
    }

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private mutating func parseString() throws -> String {
        let openingQuote = index
        index += 1
        // Fast path: no escapes, so the bytes between the quotes are the string.
        var scan = index
        while scan < bytes.count {
            let byte = bytes[scan]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            scan += 1
        }
        guard scan < bytes.count else { throw failure("unterminated string", at: openingQuote) }
        if bytes[scan] == UInt8(ascii: "\"") {
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[index..<scan]), as: UTF8.self)
            index = scan + 1
            return text
        }
        var buffer: [UInt8] = Array(UnsafeBufferPointer(rebasing: bytes[index..<scan]))
        index = scan
        while true {
            guard index < bytes.count else { throw failure("unterminated string", at: openingQuote) }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: buffer, as: UTF8.self)
            }
            if byte < 0x20 { throw failure("unescaped control character in a string") }
            if byte != UInt8(ascii: "\\") {
                buffer.append(byte)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { throw failure("unterminated escape") }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): buffer.append(0x22)
            case UInt8(ascii: "\\"): buffer.append(0x5C)
            case UInt8(ascii: "/"): buffer.append(0x2F)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                UTF8.encode(try parseUnicodeEscape()) { buffer.append($0) }
            default:
                throw failure("invalid escape '\\\(printable(escape))'", at: index - 2)
            }
        }
    }

    /// Reads the hex digits after `\u`, joining surrogate pairs. A lone surrogate is an error,
    /// as it is for serde_json.
    private mutating func parseUnicodeEscape() throws -> Unicode.Scalar {
        let escapeStart = index - 2
        let first = try parseHexQuad()
        if (0xD800...0xDBFF).contains(first) {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { throw failure("lone leading surrogate in \\u escape", at: escapeStart) }
            index += 2
            let second = try parseHexQuad()
            guard (0xDC00...0xDFFF).contains(second) else {
                throw failure("invalid trailing surrogate in \\u escape", at: escapeStart)
            }
            let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            guard let scalar = Unicode.Scalar(combined) else { throw failure("invalid \\u escape", at: escapeStart) }
            return scalar
        }
        guard let scalar = Unicode.Scalar(first) else {
            throw failure("lone trailing surrogate in \\u escape", at: escapeStart)
        }
        return scalar
    }

    private mutating func parseHexQuad() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw failure("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw failure("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}

/// A JSON value together with where it sits in the file, so every accessor can throw an error
/// that names the file and the key path.
struct JSONCursor {
    let value: JSONValue
    let path: String
    let file: String

    init(root: JSONValue, file: String) {
        self.value = root
        self.path = ""
        self.file = file
    }

    private init(value: JSONValue, path: String, file: String) {
        self.value = value
        self.path = path
        self.file = file
    }

    var isNull: Bool {
        if case .null = value { return true }
        return false
    }

    private func childPath(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The member `key`, or nil when it is absent or `null` (serde treats both as "not given").
    func optional(_ key: String) -> JSONCursor? {
        guard let child = value[key] else { return nil }
        if case .null = child { return nil }
        return JSONCursor(value: child, path: childPath(key), file: file)
    }

    func required(_ key: String) throws -> JSONCursor {
        if case .object = value {} else {
            throw TokenizerError.wrongType(file: file, path: path.isEmpty ? "(root)" : path,
                                           expected: "an object", found: value.typeName)
        }
        guard let child = optional(key) else { throw TokenizerError.missingKey(file: file, path: childPath(key)) }
        return child
    }

    func wrongType(_ expected: String) -> TokenizerError {
        .wrongType(file: file, path: path.isEmpty ? "(root)" : path, expected: expected, found: value.typeName)
    }

    func invalid(_ reason: String) -> TokenizerError {
        .invalidValue(file: file, path: path.isEmpty ? "(root)" : path, reason: reason)
    }

    func string() throws -> String {
        guard case let .string(text) = value else { throw wrongType("a string") }
        return text
    }

    func bool() throws -> Bool {
        guard case let .bool(flag) = value else { throw wrongType("a boolean") }
        return flag
    }

    func int() throws -> Int {
        guard case let .number(number) = value else { throw wrongType("an integer") }
        guard number.rounded() == number, abs(number) < 9.0e15 else { throw wrongType("an integer") }
        return Int(number)
    }

    func array() throws -> [JSONCursor] {
        guard case let .array(elements) = value else { throw wrongType("an array") }
        return elements.enumerated().map { JSONCursor(value: $1, path: "\(path)[\($0)]", file: file) }
    }

    func entries() throws -> [(key: String, value: JSONCursor)] {
        guard case let .object(members) = value else { throw wrongType("an object") }
        return members.map { ($0.key, JSONCursor(value: $0.value, path: childPath($0.key), file: file)) }
    }

    func string(_ key: String, default fallback: String) throws -> String {
        try optional(key)?.string() ?? fallback
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        try optional(key)?.bool() ?? fallback
    }

    func int(_ key: String, default fallback: Int) throws -> Int {
        try optional(key)?.int() ?? fallback
    }

    /// The `"type"` member of a stage object.
    func stageType() throws -> String {
        try required("type").string()
    }
}
