import Foundation
import Testing
@testable import Tokenizer

/// Exact agreement with the Python `tokenizers` library on every golden string.
@Suite struct GoldenParityTests {
    /// How many mismatches a failure message lists.
    static let reportedMismatches = 8

    @Test func llavaTokenizerMatchesPythonOnEveryGoldenString() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let cases = try Golden.cases()
        #expect(cases.count >= 300)
        var mismatches: [String] = []
        for golden in cases {
            var problems: [String] = []
            let ids = try tokenizer.encode(golden.text)
            if ids != golden.ids { problems.append("ids expected \(golden.ids) got \(ids)") }
            let idsNoSpecial = try tokenizer.encode(golden.text, addSpecialTokens: false)
            if idsNoSpecial != golden.idsNoSpecial {
                problems.append("idsNoSpecial expected \(golden.idsNoSpecial) got \(idsNoSpecial)")
            }
            problems += Self.decodeProblems(tokenizer, ids: golden.ids, decoded: golden.decoded,
                                            decodedSkipSpecial: golden.decodedSkipSpecial)
            if !problems.isEmpty {
                mismatches.append("#\(golden.index) \(visible(golden.text)): " + problems.joined(separator: "; "))
            }
        }
        print("golden parity: \(cases.count) strings, \(mismatches.count) mismatching")
        #expect(mismatches.isEmpty, Comment(rawValue: Self.report(mismatches, of: cases.count)))
    }

    static let variantNames = [
        "gguf-conversion", "metaspace-always-split", "metaspace-never", "byte-level", "byte-level-prefix-space",
        "split-regex-metaspace", "split-behaviours", "nfkc-lowercase", "added-token-flags",
    ]

    @Test func goldenFileListsTheTestedVariants() throws {
        #expect(try Golden.variantNames() == Self.variantNames)
    }

    /// The same strings through other stage configurations (the GGUF conversion's own stages,
    /// Metaspace schemes, ByteLevel, Split behaviours, NFKC + Lowercase, added-token flags).
    @Test(arguments: variantNames)
    func stageVariantMatchesPython(_ name: String) throws {
        let variant = try Golden.variant(named: name)
        let json = try Golden.applyPatch(try variant.member("patch"), to: try Fixtures.llamaTokenizerJSON.get())
        let tokenizer = try Tokenizer(json: json, file: "\(name).json", config: nil)
        let texts = try Golden.cases().map(\.text)
        let expected = try Golden.variantCases(variant)
        #expect(expected.count == texts.count)
        var mismatches: [String] = []
        for (index, (text, golden)) in zip(texts, expected).enumerated() {
            var problems: [String] = []
            let ids = try tokenizer.encode(text)
            if ids != golden.ids { problems.append("ids expected \(golden.ids) got \(ids)") }
            problems += Self.decodeProblems(tokenizer, ids: golden.ids, decoded: golden.decoded,
                                            decodedSkipSpecial: golden.decodedSkipSpecial)
            if !problems.isEmpty {
                mismatches.append("#\(index) \(visible(text)): " + problems.joined(separator: "; "))
            }
        }
        print("variant \(name): \(texts.count) strings, \(mismatches.count) mismatching")
        #expect(mismatches.isEmpty, Comment(rawValue: Self.report(mismatches, of: texts.count)))
    }

    /// Both decodes of `ids` (with and without special tokens) against Python's, scalar by scalar.
    static func decodeProblems(_ tokenizer: Tokenizer, ids: [Int], decoded expected: String, decodedSkipSpecial expectedSkip: String) -> [String] {
        var problems: [String] = []
        let decoded = tokenizer.decode(ids)
        if !decoded.unicodeScalars.elementsEqual(expected.unicodeScalars) {
            problems.append("decoded expected \(visible(expected)) got \(visible(decoded))")
        }
        let decodedSkipSpecial = tokenizer.decode(ids, skipSpecialTokens: true)
        if !decodedSkipSpecial.unicodeScalars.elementsEqual(expectedSkip.unicodeScalars) {
            problems.append("decodedSkipSpecial expected \(visible(expectedSkip)) got \(visible(decodedSkipSpecial))")
        }
        return problems
    }

    static func report(_ mismatches: [String], of total: Int) -> String {
        "\(mismatches.count) of \(total) strings differ; first ones:\n"
            + mismatches.prefix(reportedMismatches).joined(separator: "\n")
    }
}

/// llama.cpp's own reference encodings for this vocabulary, checked where Python `tokenizers`
/// agrees with them (the Python script records which cases those are).
@Suite struct LlamaCppParityTests {
    static let marker = "\n__ggml_vocab_test__\n"

    struct ReferenceCase {
        let text: String
        let ids: [Int]
    }

    static func referenceCases() throws -> [ReferenceCase] {
        let llamaCpp = try Fixtures.golden.get().member("llamaCpp")
        let inputs = try Fixtures.data(try llamaCpp.member("inputFile").stringValue())
        let outputs = try Fixtures.data(try llamaCpp.member("outputFile").stringValue())
        // Every case is followed by the marker, so the text after the last one is empty.
        var texts = splitBytes(inputs, on: Array(marker.utf8))
        if texts.last == "" { texts.removeLast() }
        var lines = splitBytes(outputs, on: [0x0A])
        if lines.last == "" { lines.removeLast() }
        guard texts.count == lines.count else {
            throw GoldenFormatError(description: "llama.cpp fixtures: \(texts.count) inputs but \(lines.count) outputs")
        }
        return try zip(texts, lines).map { text, line in
            let ids = try line.split(separator: " ").map { field -> Int in
                guard let id = Int(field) else { throw GoldenFormatError(description: "bad id \(field) in .out") }
                return id
            }
            return ReferenceCase(text: text, ids: ids)
        }
    }

    /// Splits on raw bytes: Foundation's string search may treat a separator followed by a
    /// combining mark as no match.
    static func splitBytes(_ data: Data, on separator: [UInt8]) -> [String] {
        let bytes = [UInt8](data)
        var pieces: [String] = []
        var start = 0
        var index = 0
        while index + separator.count <= bytes.count {
            if bytes[index..<(index + separator.count)].elementsEqual(separator) {
                pieces.append(String(decoding: bytes[start..<index], as: UTF8.self))
                index += separator.count
                start = index
            } else {
                index += 1
            }
        }
        pieces.append(String(decoding: bytes[start...], as: UTF8.self))
        return pieces
    }

    @Test func llavaTokenizerMatchesLlamaCppWherePythonDoes() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let llamaCpp = try Fixtures.golden.get().member("llamaCpp")
        let cases = try Self.referenceCases()
        #expect(cases.count == (try llamaCpp.member("caseCount").intValue()))
        let agreeing = try llamaCpp.member("agreeingIndices").idsValue()
        var mismatches: [String] = []
        for index in agreeing {
            let reference = try #require(cases.indices.contains(index) ? cases[index] : nil)
            let ids = try tokenizer.encode(reference.text, addSpecialTokens: false)
            if ids != reference.ids {
                mismatches.append("llama.cpp case \(index) \(visible(reference.text)): expected \(reference.ids) got \(ids)")
            }
        }
        print("llama.cpp parity: \(agreeing.count) of \(cases.count) cases checked (where Python agrees), \(mismatches.count) mismatching")
        #expect(agreeing.count == cases.count, "Python tokenizers disagrees with llama.cpp on some cases")
        #expect(mismatches.isEmpty, Comment(rawValue: GoldenParityTests.report(mismatches, of: agreeing.count)))
    }

    /// The raw GGUF conversion (Metaspace, prepend_scheme "first") drops SentencePiece's
    /// dummy prefix after leading spaces, so it agrees with llama.cpp on fewer cases.
    @Test func ggufConversionMatchesLlamaCppWherePythonDoes() throws {
        let variant = try Golden.variant(named: "gguf-conversion")
        let json = try Golden.applyPatch(try variant.member("patch"), to: try Fixtures.llamaTokenizerJSON.get())
        let tokenizer = try Tokenizer(json: json, file: "gguf-conversion.json", config: nil)
        let agreeing = try Fixtures.golden.get().member("llamaCpp").member("ggufConversionAgreeingIndices").idsValue()
        let cases = try Self.referenceCases()
        var mismatches: [String] = []
        for index in agreeing where cases.indices.contains(index) {
            let ids = try tokenizer.encode(cases[index].text, addSpecialTokens: false)
            if ids != cases[index].ids { mismatches.append("llama.cpp case \(index): expected \(cases[index].ids) got \(ids)") }
        }
        print("llama.cpp parity (raw GGUF conversion): \(agreeing.count) of \(cases.count) cases checked, \(mismatches.count) mismatching")
        #expect(!agreeing.isEmpty)
        #expect(mismatches.isEmpty, Comment(rawValue: GoldenParityTests.report(mismatches, of: agreeing.count)))
    }
}
