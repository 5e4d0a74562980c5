import Engine
import TensorCore
import Testing
import TestSupport

/// What feeding `chunks` gave: each feed's result, then finish()'s text.
private struct MatchedText {
    var feeds: [(emit: String, stopped: Bool)] = []
    var finished = ""
    var emits: [String] { feeds.map(\.emit) }
    var joined: String { emits.joined() + finished }
    var stopped: Bool { feeds.last?.stopped ?? false }
}

private func feed(_ chunks: [String], stopStrings: [String]) -> MatchedText {
    var matcher = StopStringMatcher(stopStrings: stopStrings)
    var matched = MatchedText()
    for chunk in chunks { matched.feeds.append(matcher.feed(chunk)) }
    matched.finished = matcher.finish()
    return matched
}

/// The answer on the whole text at once: the scalars before the earliest occurrence of any
/// (non-empty) stop string, found by trying every start position in order.
private func directCut(_ text: String, stopStrings: [String]) -> (text: String, stopped: Bool) {
    let textScalars = scalars(text)
    let stops = stopStrings.map(scalars).filter { !$0.isEmpty }
    for start in textScalars.indices where stops.contains(where: { textScalars[start...].starts(with: $0) }) {
        return (String(String.UnicodeScalarView(textScalars[..<start])), true)
    }
    return (text, false)
}

@Suite struct StopStringMatcherTests {
    @Test func aStopStringSplitAcrossChunksIsHeldThenDropped() {
        let matched = feed(["The answer is 42 ST", "OP and more", "never seen"], stopStrings: ["STOP"])
        #expect(matched.emits == ["The answer is 42 ", "", ""])
        #expect(matched.feeds.map(\.stopped) == [false, true, true])
        #expect(matched.finished == "")
        // Across three chunks, one scalar each.
        let spread = feed(["x<", "/", "s", ">tail"], stopStrings: ["</s>"])
        #expect(spread.emits == ["x", "", "", ""])
        #expect(spread.stopped)
    }

    @Test func aFalseStartIsReleasedWhenItStopsMatching() {
        let matched = feed(["abc ST", "ar", "t"], stopStrings: ["STOP"])
        #expect(matched.emits == ["abc ", "STar", "t"])
        #expect(!matched.stopped)
        #expect(matched.joined == "abc STart")
    }

    @Test func heldBackTextIsReleasedAtFinish() {
        let matched = feed(["answer: 42 </ans"], stopStrings: ["</answer>"])
        #expect(matched.emits == ["answer: 42 "])
        #expect(matched.finished == "</ans")
        #expect(!matched.stopped)
    }

    /// "abab" ends with "ab", which can still start "abac"; the match is at 2, not at 0.
    @Test func overlappingCandidates() {
        let matched = feed(["abab", "ac!"], stopStrings: ["abac"])
        #expect(matched.emits == ["ab", ""])
        #expect(matched.stopped)
        let selfOverlapping = feed(["aa", "a", "ab"], stopStrings: ["aaab"])
        #expect(selfOverlapping.joined == "a")
        #expect(selfOverlapping.stopped)
    }

    @Test func theEarliestMatchInTheTextWins() {
        // Both occur; "lo" starts first although it is listed second.
        #expect(feed(["hello world"], stopStrings: ["world", "lo"]).joined == "hel")
        // "bc" is complete at 1 but "abcd" may still match at 0: wait for the next chunk.
        let longerEarlier = feed(["abc", "d"], stopStrings: ["abcd", "bc"])
        #expect(longerEarlier.emits == ["", ""])
        #expect(longerEarlier.stopped)
        let shorterLater = feed(["abc", "x"], stopStrings: ["abcd", "bc"])
        #expect(shorterLater.emits == ["", "a"])
        #expect(shorterLater.stopped)
    }

    @Test func anEmptyListPassesEverythingThrough() {
        let chunks = ["Hello", "", " wor", "ld\n", "👍🏽"]
        let matched = feed(chunks, stopStrings: [])
        #expect(matched.emits == chunks)
        #expect(matched.finished == "")
        #expect(!matched.stopped)
        // Empty stop strings are ignored rather than stopping before the first character.
        #expect(feed(chunks, stopStrings: [""]).emits == chunks)
    }

    @Test func multiScalarGraphemesMatchAcrossChunks() {
        // Thumbs up + skin tone, one grapheme in two chunks.
        let emoji = feed(["ok 👍", "🏽 done"], stopStrings: ["👍🏽"])
        #expect(emoji.emits == ["ok ", ""])
        #expect(emoji.stopped)
        // A flag is two regional indicators; France is not Japan.
        let flags = feed(["to 🇫", "🇷 and 🇯", "🇵 done"], stopStrings: ["🇯🇵"])
        #expect(flags.emits.map(scalars) == [scalars("to 🇫"), scalars("🇷 and "), []])
        // A decomposed "é" stop string over a letter and a combining accent in separate chunks.
        let accent = feed(["cafe", "\u{301} au lait"], stopStrings: ["e\u{301}"])
        #expect(accent.emits == ["caf", ""])
        // Scalar matching: a stop string may end inside a grapheme of the text.
        let inside = feed(["ok 👍🏽 then"], stopStrings: ["👍"])
        #expect(inside.emits == ["ok "])
        #expect(inside.stopped)
        // Held text that starts with a combining mark comes out unchanged, scalar for scalar.
        let combining = feed(["ab", "\u{301}c"], stopStrings: ["b\u{301}x"])
        #expect(scalars(combining.joined) == scalars("ab\u{301}c"))
    }

    /// Every way of cutting several texts into chunks gives the direct answer on the whole text.
    @Test func anyChunkingGivesTheDirectCut() {
        let texts = ["The end.\n\nUSER: more", "aaaaab", "xx</s>yy</s>", "no stop here 🦙", "ab🇫🇷c\u{301}d", "ststopstop"]
        let stopLists = [["\n\nUSER:", "</s>"], ["aab", "ab"], ["stop", "tops"], ["🇷c"], ["c\u{301}d", "b🇫"], []]
        var generator = SplitMix64(seed: 9)
        for text in texts {
            let textScalars = scalars(text)
            for stopStrings in stopLists {
                let expected = directCut(text, stopStrings: stopStrings)
                for _ in 0..<30 {
                    var chunks: [String] = []
                    var start = 0
                    while start < textScalars.count {
                        let length = Int(generator.next() % 4)  // empty chunks included
                        let end = min(start + length, textScalars.count)
                        chunks.append(String(String.UnicodeScalarView(textScalars[start..<end])))
                        start = end
                    }
                    let matched = feed(chunks, stopStrings: stopStrings)
                    #expect(scalars(matched.joined) == scalars(expected.text), "\(chunks) with \(stopStrings)")
                    #expect(matched.stopped == expected.stopped, "\(chunks) with \(stopStrings)")
                }
            }
        }
    }
}
