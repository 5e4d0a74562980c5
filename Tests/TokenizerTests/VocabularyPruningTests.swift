import Foundation
import Testing
@testable import Tokenizer

@Suite struct VocabularyPruningTests {
    static let texts = [
        "USER: <image>\nWhat is the shape of the red object? ASSISTANT: circle</s>USER: How many squares are there? ASSISTANT: 2</s>",
        "USER: Which digit is in the top right cell? ASSISTANT:",
    ]

    func pruned() throws -> (summary: VocabularyPruning.Summary, source: Tokenizer, pruned: Tokenizer, output: URL) {
        let source = try Fixtures.url("../tiny-llava")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("pruned-\(UUID().uuidString)")
        let summary = try VocabularyPruning.prune(source: source, texts: Self.texts, output: output)
        return (summary, try Tokenizer(tokenizerJSON: source.appendingPathComponent("tokenizer.json")),
                try Tokenizer(tokenizerJSON: output.appendingPathComponent("tokenizer.json")), output)
    }

    @Test func theTextsEncodeAsBeforeRenumberedAndTheVocabularyIsSmall() throws {
        let (summary, source, pruned, output) = try pruned()
        defer { try? FileManager.default.removeItem(at: output) }
        // 3 specials + 256 bytes + every vocabulary token inside two sentences (a few hundred of
        // LLaMA's 32000); <image> and <pad> follow.
        #expect(summary.vocabularyCount > 259 && summary.vocabularyCount < 1000)
        #expect(summary.totalCount == summary.vocabularyCount + 2 && pruned.vocabularySize == summary.totalCount)
        for text in Self.texts {
            let before = try source.encode(text), after = try pruned.encode(text)
            #expect(after == before.map { summary.newIDs[$0]! })
            #expect(pruned.decode(after) == source.decode(before))
        }
        // Specials and bytes keep their ids; added tokens follow the vocabulary.
        #expect(pruned.tokenID("<s>") == 1 && pruned.tokenID("</s>") == 2 && pruned.tokenID("<0x41>") == 3 + 0x41)
        #expect(pruned.tokenID("<image>") == summary.vocabularyCount && pruned.tokenID("<pad>") == summary.vocabularyCount + 1)
        #expect(pruned.bosTokenID == 1 && pruned.eosTokenID == 2 && pruned.padTokenID == summary.vocabularyCount + 1)
        // tokenizer_config.json's table follows the new ids.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("tokenizer_config.json"))) as? [String: Any]
        let table = try #require(config?["added_tokens_decoder"] as? [String: [String: Any]])
        #expect(table[String(summary.vocabularyCount)]?["content"] as? String == "<image>")
        #expect(table["32000"] == nil)
    }

    @Test func otherTextStillEncodesThroughShorterPiecesOrBytes() throws {
        let (_, source, pruned, output) = try pruned()
        defer { try? FileManager.default.removeItem(at: output) }
        for text in ["Zürich has a lake.", "東京 🙂", "elephants"] {
            let ids = try pruned.encode(text, addSpecialTokens: false)
            #expect(try ids.count >= source.encode(text, addSpecialTokens: false).count)
            #expect(pruned.decode(ids) == text)
        }
    }
}
