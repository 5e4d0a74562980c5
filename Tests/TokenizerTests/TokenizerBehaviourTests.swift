import Foundation
import Testing
@testable import Tokenizer

/// Properties of the llava-1.5 tokenizer and of single stages; expected values come from the
/// Python `tokenizers` library (0.23.3) on the same files.
@Suite struct TokenizerBehaviourTests {
    @Test func llavaSpecialTokensAndSizes() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.padTokenID == 32001)
        #expect(tokenizer.vocabularySize == 32002)
        #expect(tokenizer.tokenID("<image>") == 32000)
        #expect(tokenizer.tokenID("<pad>") == 32001)
        #expect(tokenizer.tokenID("<unk>") == 0)
        #expect(tokenizer.token(forID: 32000) == "<image>")
        #expect(tokenizer.isSpecialToken(32000))
        #expect(!tokenizer.isSpecialToken(15043))
        #expect(try tokenizer.encode("<image>", addSpecialTokens: false) == [32000])
        #expect(try tokenizer.encode("Hello<image>world") == [1, 15043, 32000, 3186])
    }

    @Test func withoutConfigTheTemplateAndWellKnownNamesGiveBosAndEos() throws {
        let tokenizer = try Tokenizer(data: try Fixtures.data("../tiny-llava/tokenizer.json"))
        #expect(tokenizer.bosTokenID == 1)
        #expect(tokenizer.eosTokenID == 2)
        #expect(tokenizer.padTokenID == nil)
    }

    /// The vocabulary holds both U+03AF and U+1F77 ("ί" twice, canonically equivalent); Swift
    /// String keys would merge them.
    @Test func canonicallyEquivalentTokensStayDistinct() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        #expect(tokenizer.tokenID("\u{03AF}") == 30207)
        #expect(tokenizer.tokenID("\u{1F77}") == 30873)
        #expect(tokenizer.tokenID("\u{00E9}") == 29948)
        #expect(tokenizer.tokenID("e\u{0301}") == nil)
        #expect(try tokenizer.encode("e\u{0301}") == [1, 321, 30103])
        #expect(try tokenizer.encode("\u{00E9}") == [1, 904])
    }

    @Test func byteFallbackDecoding() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        // An incomplete UTF-8 sequence becomes one replacement character per byte.
        #expect(tokenizer.decode([243, 162]) == "\u{FFFD}\u{FFFD}")
        #expect(tokenizer.decode([243, 15043]) == "\u{FFFD} Hello")
        #expect(tokenizer.decode([29871, 243, 162, 155, 131, 13]) == "😀\n")
        // Unknown ids are skipped, not fatal.
        #expect(tokenizer.decode([99_999, -1, 15043]) == "Hello")
    }

    @Test func byteTokenParsingFollowsRust() {
        #expect(ByteFallbackDecoder.byteValue(of: "<0x0A>") == 0x0A)
        #expect(ByteFallbackDecoder.byteValue(of: "<0xa9>") == 0xA9)
        #expect(ByteFallbackDecoder.byteValue(of: "<0x+A>") == 0x0A)
        #expect(ByteFallbackDecoder.byteValue(of: "<0xZZ>") == nil)
        #expect(ByteFallbackDecoder.byteValue(of: "<0x0A") == nil)
        #expect(ByteFallbackDecoder().decodeChain(["<0x+A>", "<0xa9>", "<0xC3>", "x"]) == ["\u{FFFD}", "\u{FFFD}", "\u{FFFD}", "x"])
    }

    @Test func stripDecoderNeverTrapsWhenCutsCross() {
        #expect(StripDecoder(content: " ", start: 2, stop: 1).decodeChain([" ", "  a  ", "   b   "]) == ["", "a ", " b  "])
    }

    @Test func metaspaceDecoderDropsEveryMarkerInTheFirstToken() {
        let always = MetaspaceDecoder(replacement: "\u{2581}", prependScheme: .always)
        #expect(always.decodeChain(["\u{2581}\u{2581}a\u{2581}b", "\u{2581}\u{2581}c"]).joined() == "ab  c")
        let never = MetaspaceDecoder(replacement: "\u{2581}", prependScheme: .never)
        #expect(never.decodeChain(["\u{2581}\u{2581}a\u{2581}b", "\u{2581}\u{2581}c"]).joined() == "  a b  c")
    }

    @Test func gpt2SplitMatchesTheRegex() {
        // From tokenizers' ByteLevel(add_prefix_space=False).pre_tokenize_str.
        let text = Scalars("Hello  world\n\n  x 's'tx")
        let pieces = ByteLevelPreTokenizer.gpt2Ranges(text).map { Array(text[$0]).string }
        #expect(pieces == ["Hello", " ", " world", "\n\n ", " x", " '", "s", "'t", "x"])
    }

    /// `tokenizers` ignores the ids written in added_tokens and numbers new tokens after the
    /// vocabulary in file order.
    @Test func addedTokenIDsAreAssignedLikeTokenizers() throws {
        let base = try Fixtures.llamaTokenizerJSON.get()
        let extra: [JSONValue] = [("<gap>", 32_010, true), ("<x>", 5, false)].map { content, id, special in
            .object([("id", .number(Double(id))), ("content", .string(content)), ("single_word", .bool(false)),
                     ("lstrip", .bool(false)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                     ("special", .bool(special))])
        }
        let json = try Golden.applyPatch(.object([("appendAddedTokens", .array(extra))]), to: base)
        let tokenizer = try Tokenizer(json: json, file: "extra.json", config: nil)
        #expect(try tokenizer.encode("a<gap>b<x>", addSpecialTokens: false) == [263, 32002, 289, 32003])
        #expect(tokenizer.token(forID: 5) == "<0x02>")
        #expect(tokenizer.vocabularySize == 32004)
    }

    @Test func concurrentEncodingGivesTheSameIds() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let texts = try Golden.cases().map(\.text)
        let expected = try texts.map { try tokenizer.encode($0) }
        let results = ConcurrentResults(count: texts.count)
        DispatchQueue.concurrentPerform(iterations: texts.count) { index in
            results.set(index, (try? tokenizer.encode(texts[index])) ?? [])
        }
        #expect(results.values == expected)
    }

    /// A 4000-character prompt with no repeated words, so the word cache cannot help; the
    /// legacy LLaMA layout makes it a single 4000-scalar BPE word, the worst case.
    @Test func encodesA4000CharacterPromptQuickly() throws {
        let tokenizer = try Fixtures.llamaTokenizer.get()
        let prompt = Self.nonRepeatingPrompt(characters: 4000)
        _ = try tokenizer.encode("warm up")
        let clock = ContinuousClock()
        var ids: [Int] = []
        let elapsed = try clock.measure { ids = try tokenizer.encode(prompt) }
        let milliseconds = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        print("encode speed: \(prompt.unicodeScalars.count) characters -> \(ids.count) tokens in \(String(format: "%.2f", milliseconds)) ms")
        #expect(ids.count > 500)
        #expect(tokenizer.decode(ids, skipSpecialTokens: true) == prompt)
        // Generous: debug builds on a loaded machine; release runs are far below 100 ms.
        #expect(milliseconds < 1000)
    }

    /// Loading time of the 1.2 MB llava tokenizer.json (reported, loosely bounded).
    @Test func loadsTheLlavaTokenizerQuickly() throws {
        let url = try Fixtures.url("../tiny-llava/tokenizer.json")
        let clock = ContinuousClock()
        var tokenizer: Tokenizer?
        let elapsed = clock.measure { tokenizer = try? Tokenizer(tokenizerJSON: url) }
        let milliseconds = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        print("load speed: tokenizer.json in \(String(format: "%.0f", milliseconds)) ms")
        #expect(tokenizer?.vocabularySize == 32002)
        #expect(milliseconds < 20_000)
    }

    static func nonRepeatingPrompt(characters: Int) -> String {
        let syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "dor", "pi", "qua", "zen", "ho", "bri", "nu"]
        var generator = SplitMix64(seed: 42)
        var text = "USER: "
        while text.unicodeScalars.count < characters {
            let length = Int(generator.next() % 3) + 1
            var word = ""
            for _ in 0..<length { word += syllables[Int(generator.next() % UInt64(syllables.count))] }
            text += word + (generator.next() % 9 == 0 ? ". " : " ")
        }
        return String(text.unicodeScalars.prefix(characters))
    }
}

/// Deterministic random numbers for test inputs.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Collects results written from several threads.
final class ConcurrentResults: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [[Int]]
    init(count: Int) { storage = Array(repeating: [], count: count) }
    func set(_ index: Int, _ ids: [Int]) {
        lock.lock()
        storage[index] = ids
        lock.unlock()
    }
    var values: [[Int]] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}
