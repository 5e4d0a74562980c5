import Foundation

/// JSON as every file, report and response this project writes it: keys sorted, slashes
/// unescaped.
public func encodeJSON<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(value)
}

/// `encodeJSON` as text, for printing.
public func encodeJSONText<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try encodeJSON(value), as: UTF8.self)
}
