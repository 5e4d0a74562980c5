import Foundation

/// A token from `"added_tokens"`, matched in the text before the model sees it.
struct AddedToken {
    let id: Int
    let content: String
    /// Only match when not glued to word characters on either side.
    let singleWord: Bool
    /// Swallow whitespace on the left / right of the match.
    let leftStrip: Bool
    let rightStrip: Bool
    /// Match against the normalized text (after the normalizer) rather than the raw input.
    let normalized: Bool
    /// Special tokens are dropped by `decode(_:skipSpecialTokens: true)`.
    let special: Bool
}

/// One stretch of the input after added tokens were taken out.
enum Segment {
    case addedToken(id: Int)
    case text(TextPiece)
}

/// Finds added tokens in text with leftmost-longest matching, the `aho-corasick`
/// `MatchKind::LeftmostLongest` semantics `tokenizers` uses, over a scalar trie.
struct AddedTokenMatcher {
    private struct Node {
        var children: [Unicode.Scalar: Int] = [:]
        /// Index into `tokens` of the pattern ending here; the first pattern added wins a tie.
        var tokenIndex: Int?
    }

    private var nodes = [Node()]
    private let tokens: [AddedToken]

    var isEmpty: Bool { tokens.isEmpty }

    /// `patterns[i]` is what `tokens[i]` looks like in the text this matcher will search.
    init(tokens: [AddedToken], patterns: [Scalars]) {
        self.tokens = tokens
        for (tokenIndex, pattern) in patterns.enumerated() where !pattern.isEmpty {
            var node = 0
            for scalar in pattern {
                if let child = nodes[node].children[scalar] {
                    node = child
                } else {
                    nodes.append(Node())
                    nodes[node].children[scalar] = nodes.count - 1
                    node = nodes.count - 1
                }
            }
            if nodes[node].tokenIndex == nil { nodes[node].tokenIndex = tokenIndex }
        }
    }

    private func longestMatch(in text: Scalars, from start: Int) -> (end: Int, token: AddedToken)? {
        var node = 0
        var best: (end: Int, token: AddedToken)?
        var position = start
        while position < text.count, let child = nodes[node].children[text[position]] {
            node = child
            position += 1
            if let tokenIndex = nodes[node].tokenIndex { best = (position, tokens[tokenIndex]) }
        }
        return best
    }

    /// Splits `piece` into added tokens and the text between them, applying the tokens'
    /// single_word / lstrip / rstrip rules exactly as `tokenizers`' `find_matches` does.
    func split(_ piece: TextPiece) -> [Segment] {
        let text = piece.scalars
        guard !isEmpty, !text.isEmpty else { return text.isEmpty ? [] : [.text(piece)] }
        var segments: [Segment] = []
        var consumedUpTo = 0
        var searchFrom = 0
        func appendText(_ range: Range<Int>) {
            guard !range.isEmpty else { return }
            segments.append(.text(TextPiece(scalars: Array(text[range]),
                                            startsAtInputStart: piece.startsAtInputStart && range.lowerBound == 0)))
        }
        while searchFrom < text.count {
            guard let match = longestMatch(in: text, from: searchFrom) else {
                searchFrom += 1
                continue
            }
            var start = searchFrom
            var stop = match.end
            // A rejected match is still consumed: the automaton resumes after it.
            searchFrom = match.end
            let token = match.token
            if token.singleWord {
                let freeOnLeft = start == 0 || !CharacterClass.isWordCharacter(text[start - 1])
                let freeOnRight = stop == text.count || !CharacterClass.isWordCharacter(text[stop])
                guard freeOnLeft, freeOnRight else { continue }
            }
            if token.leftStrip {
                var newStart = start
                while newStart > 0, CharacterClass.isWhitespace(text[newStart - 1]) { newStart -= 1 }
                // Spaces already taken by the previous match stay with it.
                start = max(newStart, consumedUpTo)
            }
            if token.rightStrip {
                while stop < text.count, CharacterClass.isWhitespace(text[stop]) { stop += 1 }
            }
            appendText(consumedUpTo..<start)
            segments.append(.addedToken(id: token.id))
            consumedUpTo = stop
            // Whitespace taken by rstrip is not searched again; `tokenizers` would produce
            // overlapping pieces for a token that starts with whitespace there.
            searchFrom = max(searchFrom, stop)
        }
        appendText(consumedUpTo..<text.count)
        return segments
    }
}
