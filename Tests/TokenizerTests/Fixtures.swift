import Foundation
@testable import Tokenizer

/// The committed golden files (made by tools/reference/make_tokenizer_fixtures.py), loaded once
/// and shared by all tests.
enum Fixtures {
    struct MissingFixture: Error, CustomStringConvertible {
        let name: String
        var description: String { "fixture \(name) is missing from the test bundle" }
    }

    /// Tests/Fixtures/tokenizer in the source tree; the tokenizer itself is tiny-llava's.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    static func url(_ relativePath: String) throws -> URL {
        let url = directory.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else { throw MissingFixture(name: relativePath) }
        return url
    }

    static func data(_ relativePath: String) throws -> Data {
        try Data(contentsOf: try url(relativePath))
    }

    /// The llava-1.5 style tokenizer, loaded through the public file API (so the sibling
    /// tokenizer_config.json is read too).
    static let llamaTokenizer: Result<Tokenizer, Error> = Result {
        try Tokenizer(tokenizerJSON: try url("../tiny-llava/tokenizer.json"))
    }

    /// The same tokenizer.json as a JSON tree, for building stage variants.
    static let llamaTokenizerJSON: Result<JSONValue, Error> = Result {
        try JSONParser.parse(try data("../tiny-llava/tokenizer.json"), file: "tokenizer.json")
    }

    static let golden: Result<JSONValue, Error> = Result {
        try JSONParser.parse(try data("golden.json"), file: "golden.json")
    }
}

/// One string of golden.json with what Python `tokenizers` produced for it.
struct GoldenCase {
    let index: Int
    let text: String
    let ids: [Int]
    let idsNoSpecial: [Int]
    let decoded: String
    let decodedSkipSpecial: String
}

/// What a stage variant produced for the same strings.
struct VariantCase {
    let ids: [Int]
    let decoded: String
    let decodedSkipSpecial: String
}

struct GoldenFormatError: Error, CustomStringConvertible {
    let description: String
}

extension JSONValue {
    func member(_ key: String) throws -> JSONValue {
        guard let value = self[key] else { throw GoldenFormatError(description: "golden.json lacks \"\(key)\"") }
        return value
    }

    func arrayValue() throws -> [JSONValue] {
        guard case let .array(elements) = self else { throw GoldenFormatError(description: "expected an array") }
        return elements
    }

    func stringValue() throws -> String {
        guard case let .string(text) = self else { throw GoldenFormatError(description: "expected a string") }
        return text
    }

    func intValue() throws -> Int {
        guard case let .number(number) = self, let value = Int(exactly: number) else {
            throw GoldenFormatError(description: "expected an integer")
        }
        return value
    }

    func idsValue() throws -> [Int] {
        try arrayValue().map { try $0.intValue() }
    }

    /// A copy with `key` set (replacing an existing member in place, else appended).
    func setting(_ key: String, to newValue: JSONValue) -> JSONValue {
        guard case var .object(entries) = self else { return self }
        if let index = entries.firstIndex(where: { $0.key == key }) {
            entries[index].value = newValue
        } else {
            entries.append((key, newValue))
        }
        return .object(entries)
    }
}

enum Golden {
    static func cases() throws -> [GoldenCase] {
        let root = try Fixtures.golden.get()
        return try root.member("cases").arrayValue().enumerated().map { index, entry in
            GoldenCase(index: index,
                       text: try entry.member("text").stringValue(),
                       ids: try entry.member("ids").idsValue(),
                       idsNoSpecial: try entry.member("idsNoSpecial").idsValue(),
                       decoded: try entry.member("decoded").stringValue(),
                       decodedSkipSpecial: try entry.member("decodedSkipSpecial").stringValue())
        }
    }

    static func variant(named name: String) throws -> JSONValue {
        let root = try Fixtures.golden.get()
        for variant in try root.member("variants").arrayValue() where try variant.member("name").stringValue() == name {
            return variant
        }
        throw GoldenFormatError(description: "golden.json has no variant \"\(name)\"")
    }

    static func variantNames() throws -> [String] {
        try Fixtures.golden.get().member("variants").arrayValue().map { try $0.member("name").stringValue() }
    }

    static func variantCases(_ variant: JSONValue) throws -> [VariantCase] {
        try variant.member("cases").arrayValue().map {
            VariantCase(ids: try $0.member("ids").idsValue(), decoded: try $0.member("decoded").stringValue(),
                        decodedSkipSpecial: try $0.member("decodedSkipSpecial").stringValue())
        }
    }

    /// Applies a variant's patch with the same rules as `apply_patch` in the Python script:
    /// top-level keys replace, `model` keys merge, `appendAddedTokens` extends `added_tokens`,
    /// `mergesAsPairs` rewrites "a b" merges as ["a", "b"].
    static func applyPatch(_ patch: JSONValue, to base: JSONValue) throws -> JSONValue {
        guard case let .object(patchEntries) = patch else { throw GoldenFormatError(description: "patch is not an object") }
        var result = base
        for (key, value) in patchEntries {
            switch key {
            case "model":
                guard case let .object(modelPatch) = value else { throw GoldenFormatError(description: "bad model patch") }
                var model = try result.member("model")
                for (modelKey, modelValue) in modelPatch { model = model.setting(modelKey, to: modelValue) }
                result = result.setting("model", to: model)
            case "appendAddedTokens":
                let existing = try result.member("added_tokens").arrayValue()
                result = result.setting("added_tokens", to: .array(existing + (try value.arrayValue())))
            case "mergesAsPairs":
                guard case .bool(true) = value else { continue }
                var model = try result.member("model")
                let pairs: [JSONValue] = try model.member("merges").arrayValue().map { merge in
                    // Split on the byte, not on Characters: a space followed by a combining
                    // mark is one Character.
                    let parts = try merge.stringValue().utf8.split(separator: 0x20, omittingEmptySubsequences: false)
                    return .array(parts.map { .string(String(decoding: $0, as: UTF8.self)) })
                }
                model = model.setting("merges", to: .array(pairs))
                result = result.setting("model", to: model)
            default:
                result = result.setting(key, to: value)
            }
        }
        return result
    }
}

/// Shows control and invisible characters so a failing string can be read in the log.
func visible(_ text: String, limit: Int = 80) -> String {
    var shown = ""
    for scalar in text.unicodeScalars.prefix(limit) {
        if scalar.isASCII, scalar.value >= 0x20, scalar.value < 0x7F {
            shown.unicodeScalars.append(scalar)
        } else if scalar.properties.generalCategory == .control || scalar.properties.isWhitespace
                    || scalar.properties.generalCategory == .format || scalar.properties.generalCategory == .nonspacingMark {
            shown += "\\u{\(String(scalar.value, radix: 16))}"
        } else {
            shown.unicodeScalars.append(scalar)
        }
    }
    return "\"" + shown + (text.unicodeScalars.count > limit ? "…" : "") + "\""
}
