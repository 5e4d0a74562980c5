import Engine
import Foundation
import TensorCore
import Testing
import TestSupport
import Tokenizer

/// What streaming `ids` one by one gave: the chunk of each append, then finish()'s text.
private struct StreamedText {
    var chunks: [String] = []
    var finished = ""
    var joined: String { chunks.joined() + finished }
}

/// Streams `ids` and checks on the way that the text emitted so far is always a prefix (byte
/// for byte) of the decode of the tokens appended so far: nothing emitted is ever revised.
private func stream(_ ids: [Int], _ tokenizer: Tokenizer, skipSpecialTokens: Bool) -> StreamedText {
    var detokenizer = IncrementalDetokenizer(tokenizer: tokenizer, skipSpecialTokens: skipSpecialTokens)
    var streamed = StreamedText()
    for (count, id) in ids.enumerated() {
        streamed.chunks.append(detokenizer.append(id))
        let decodedSoFar = tokenizer.decode(Array(ids[...count]), skipSpecialTokens: skipSpecialTokens)
        #expect(decodedSoFar.utf8.starts(with: streamed.chunks.joined().utf8), "after \(count + 1) of \(ids)")
    }
    streamed.finished = detokenizer.finish()
    #expect(detokenizer.tokens == ids)
    #expect(detokenizer.finish() == "", "a second finish has nothing left")
    return streamed
}

/// Streams `ids` both ways of treating special tokens and checks the chunks add up, scalar for
/// scalar, to `decode`, and that no chunk holds U+FFFD unless the full text does.
private func expectStreamEqualsDecode(_ ids: [Int], _ tokenizer: Tokenizer, _ label: String) {
    for skipSpecialTokens in [true, false] {
        let streamed = stream(ids, tokenizer, skipSpecialTokens: skipSpecialTokens)
        let decoded = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        #expect(scalars(streamed.joined) == scalars(decoded), "\(label), skipSpecialTokens \(skipSpecialTokens)")
        if !decoded.unicodeScalars.contains("\u{FFFD}") {
            #expect(!(streamed.chunks + [streamed.finished]).contains { $0.unicodeScalars.contains("\u{FFFD}") },
                    "\(label): a chunk holds U+FFFD")
        }
    }
}

private func isByteFallbackToken(_ id: Int, _ tokenizer: Tokenizer) -> Bool {
    guard let spelling = tokenizer.token(forID: id) else { return false }
    return spelling.utf8.count == 6 && spelling.hasPrefix("<0x")
}

@Suite struct IncrementalDetokenizerTests {
    static let texts = [
        "Hello world",
        "  leading spaces and   runs of   spaces  ",
        "line one\nline two\n\n\tTabbed\r\nwindows newline",
        "Café crème brûlée, naïve façade",
        "e\u{301} decomposed accents o\u{308} and a\u{30A}",
        "中文分词测试，日本語のテキスト、한국어 문장",
        "Emoji: 🦙🔥👍🏽 flags 🇫🇷🇯🇵 family 👨‍👩‍👧 🧪",
        "Price: 5€, 10 €, €€€ and ₹ ₿",
        "Math: ∑ x² ≤ ∞ — “quotes” ‘single’ … ℵ0",
        "<image>\nDescribe <image> the picture</s> then more <s>",
        "\n", " ", "", "  ", "\u{00A0}nbsp and zero\u{200D}width",
        "Mixed: αβγ Ωmega Привет мир 🦙!",
    ]

    @Test func streamingEncodedTextsGivesExactlyTheDecode() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        var byteFallbackTokens = 0
        for text in Self.texts {
            for addSpecialTokens in [true, false] {
                let ids = try tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
                byteFallbackTokens += ids.filter { isByteFallbackToken($0, tokenizer) }.count
                expectStreamEqualsDecode(ids, tokenizer, "\(text.debugDescription) addSpecialTokens \(addSpecialTokens)")
            }
        }
        // The texts do reach the byte-fallback path (the llama emoji has no token of its own).
        #expect(byteFallbackTokens >= 20)
    }

    @Test func randomIdsStreamExactly() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        var generator = SplitMix64(seed: 77)
        let specials = [0, 1, 2, 32000, 32001, -1, 32002, 40000]
        for sequence in 0..<300 {
            let ids = (0..<24).map { _ -> Int in
                switch generator.next() % 10 {
                case 0..<4: return Int(3 + generator.next() % 256)  // byte-fallback tokens <0x00>...<0xFF>
                case 4: return specials[Int(generator.next() % UInt64(specials.count))]
                case 5: return [229, 133, 175, 243, 162, 169, 156][Int(generator.next() % 7)]  // bytes of € and 🦙 (byte + 3)
                default: return Int(generator.next() % UInt64(tokenizer.vocabularySize))
                }
            }
            expectStreamEqualsDecode(ids, tokenizer, "random sequence \(sequence): \(ids)")
        }
    }

    @Test func euroFromThreeByteTokensComesOutWhole() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let euro = [229, 133, 175]  // <0xE2> <0x82> <0xAC>
        #expect(euro.map { tokenizer.token(forID: $0) } == ["<0xE2>", "<0x82>", "<0xAC>"])
        let streamed = stream(euro + [263], tokenizer, skipSpecialTokens: true)  // then "▁a"
        #expect(streamed.chunks == ["", "", "", "€ a"])
        #expect(streamed.finished == "")
        // Ending on the byte run, finish gives it.
        let ended = stream(euro, tokenizer, skipSpecialTokens: true)
        #expect(ended.chunks == ["", "", ""])
        #expect(ended.finished == "€")
    }

    /// One more byte after a complete "€" makes `tokenizers` turn the whole run into U+FFFD, so
    /// "€" must not have been emitted.
    @Test func aByteAfterACompleteCharacterInvalidatesTheRun() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let ids = [229, 133, 175, 131, 278]  // <0xE2> <0x82> <0xAC> <0x80> ▁the
        let decoded = tokenizer.decode(ids)
        #expect(decoded == String(repeating: "\u{FFFD}", count: 4) + " the")
        let streamed = stream(ids, tokenizer, skipSpecialTokens: true)
        #expect(streamed.chunks == ["", "", "", "", decoded])
        #expect(!streamed.chunks.contains { $0.contains("€") })
    }

    @Test func ordinaryTokensComeOutAtOnceWithTheFirstLeadingSpaceStripped() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let ids = try tokenizer.encode("Hello world, how are you?", addSpecialTokens: false)
        let streamed = stream(ids, tokenizer, skipSpecialTokens: true)
        #expect(streamed.chunks.allSatisfy { !$0.isEmpty })
        #expect(streamed.chunks.prefix(2) == ["Hello", " world"])
        #expect(streamed.finished == "")
        // A lone "▁" first: its space is the one decode strips, the next token keeps its own.
        let spaceFirst = stream([29871, 15043], tokenizer, skipSpecialTokens: true)
        #expect(spaceFirst.chunks == ["", " Hello"])
        #expect(tokenizer.decode([29871, 15043]) == " Hello")
    }

    @Test func specialTokensFollowTheSkipSetting() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let ids = [1, 15043, 32000, 3186, 2]  // <s> ▁Hello <image> ▁world </s>
        let skipped = stream(ids, tokenizer, skipSpecialTokens: true)
        #expect(skipped.joined == "Hello world")
        #expect(skipped.chunks == ["", "Hello", "", " world", ""])
        let kept = stream(ids, tokenizer, skipSpecialTokens: false)
        #expect(kept.joined == tokenizer.decode(ids, skipSpecialTokens: false))
        #expect(kept.joined == "<s> Hello<image> world</s>")
    }
}
