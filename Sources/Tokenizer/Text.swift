import Foundation

/// Text is handled as arrays of Unicode scalars throughout: `tokenizers` works on Rust `char`s
/// (scalars), while Swift `String` and `Character` compare by canonical equivalence and group
/// grapheme clusters, either of which would change which tokens are found.
typealias Scalars = [Unicode.Scalar]

extension Array where Element == Unicode.Scalar {
    init(_ text: String) {
        self = Array(text.unicodeScalars)
    }

    var string: String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: self)
        return String(view)
    }

    var utf8Bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for scalar in self { UTF8.encode(scalar) { bytes.append($0) } }
        return bytes
    }
}

/// Character classes as Rust's `regex` crate and Oniguruma define them for Unicode text.
enum CharacterClass {
    /// `\s`, Rust's `char::is_whitespace`: the Unicode White_Space property.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace
    }

    /// `\p{L}`.
    static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// `\p{N}`, Rust's `char::is_numeric`.
    static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// `\w` in Rust's `regex` crate: Alphabetic, marks, decimal digits, connector punctuation
    /// and Join_Control.
    static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

/// Byte offset of the first byte that is not part of valid UTF-8, or nil when all are.
func firstInvalidUTF8Offset(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
    var offset = 0
    while offset < bytes.count {
        let lead = bytes[offset]
        let length: Int
        let secondRange: ClosedRange<UInt8>
        switch lead {
        case 0x00...0x7F: offset += 1; continue
        case 0xC2...0xDF: length = 2; secondRange = 0x80...0xBF
        case 0xE0: length = 3; secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3; secondRange = 0x80...0xBF
        case 0xED: length = 3; secondRange = 0x80...0x9F
        case 0xF0: length = 4; secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4; secondRange = 0x80...0xBF
        case 0xF4: length = 4; secondRange = 0x80...0x8F
        default: return offset
        }
        guard offset + length <= bytes.count, secondRange.contains(bytes[offset + 1]) else { return offset }
        for continuation in 2..<length where !(0x80...0xBF).contains(bytes[offset + continuation]) {
            return offset
        }
        offset += length
    }
    return nil
}

/// A compiled tokenizer.json regular expression with what names it in errors.
struct BoundedRegex {
    let expression: NSRegularExpression
    /// The pattern as tokenizer.json writes it.
    let source: String
    let file: String
    /// Where it sits in the file, e.g. `pre_tokenizer.pretokenizers[0].pattern.Regex`.
    let path: String

    /// One second, plus one per 100,000 characters: linear patterns need milliseconds for that;
    /// exponential backtracking exceeds it within a few dozen characters.
    static func timeLimit(characters: Int) -> Duration { .seconds(1) + .microseconds(10 * characters) }
}

/// A `{"String": ...}` or `{"Regex": ...}` pattern, as used by Replace and Split.
enum TextPattern {
    case literal(Scalars)
    case regex(BoundedRegex)

    /// Reads `{"String": "..."}` or `{"Regex": "..."}`.
    static func parse(_ cursor: JSONCursor) throws -> TextPattern {
        if let literal = cursor.optional("String") {
            return .literal(Scalars(try literal.string()))
        }
        if let regex = cursor.optional("Regex") {
            let source = try regex.string()
            do {
                return .regex(BoundedRegex(
                    expression: try NSRegularExpression(pattern: RegexDialect.icuPattern(fromOniguruma: source)),
                    source: source, file: regex.file, path: regex.path))
            } catch {
                throw regex.invalid("invalid regular expression \(source.debugDescription): \(error)")
            }
        }
        throw cursor.invalid("a pattern needs a \"String\" or a \"Regex\" member")
    }

    /// Non-overlapping matches, left to right, as scalar offset ranges. A regular expression that
    /// runs past its time limit (catastrophic backtracking) throws, naming the pattern.
    func matches(in text: Scalars) throws -> [Range<Int>] {
        switch self {
        case let .literal(needle):
            return Self.literalMatches(of: needle, in: text)
        case let .regex(regex):
            let limit = BoundedRegex.timeLimit(characters: text.count)
            guard let found = Self.regexMatches(of: regex.expression, in: text, deadline: .now + limit) else {
                throw TokenizerError.invalidValue(
                    file: regex.file, path: regex.path,
                    reason: "the regular expression \(regex.source.debugDescription) did not finish within \(limit) on a text of "
                        + "\(text.count) characters (catastrophic backtracking, such as a nested repetition like (a+)+); "
                        + "the tokenizer file needs a pattern that runs in linear time")
            }
            return found
        }
    }

    /// `matches(in:)` without a time limit, for the decoders, which see the model's own tokens
    /// and cannot report an error.
    func unboundedMatches(in text: Scalars) -> [Range<Int>] {
        switch self {
        case let .literal(needle): return Self.literalMatches(of: needle, in: text)
        case let .regex(regex): return Self.regexMatches(of: regex.expression, in: text, deadline: nil) ?? []
        }
    }

    private static func literalMatches(of needle: Scalars, in text: Scalars) -> [Range<Int>] {
        // An empty literal would match between every scalar; no tokenizer file relies on that.
        guard !needle.isEmpty, needle.count <= text.count else { return [] }
        var found: [Range<Int>] = []
        var start = 0
        let first = needle[0]
        while start + needle.count <= text.count {
            if text[start] == first, text[start..<(start + needle.count)].elementsEqual(needle) {
                found.append(start..<(start + needle.count))
                start += needle.count
            } else {
                start += 1
            }
        }
        return found
    }

    /// nil when `deadline` passed first: ICU calls the block periodically during a long match
    /// (`reportProgress`), and the block stops the search.
    private static func regexMatches(
        of expression: NSRegularExpression, in text: Scalars, deadline: ContinuousClock.Instant?
    ) -> [Range<Int>]? {
        guard !text.isEmpty else { return [] }
        // NSRegularExpression reports UTF-16 offsets; map them back to scalar offsets.
        var scalarIndexAtUTF16: [Int] = []
        scalarIndexAtUTF16.reserveCapacity(text.count * 2 + 1)
        for (index, scalar) in text.enumerated() {
            scalarIndexAtUTF16.append(index)
            if scalar.value > 0xFFFF { scalarIndexAtUTF16.append(index) }
        }
        scalarIndexAtUTF16.append(text.count)
        let string = text.string
        let fullRange = NSRange(location: 0, length: scalarIndexAtUTF16.count - 1)
        var found: [NSTextCheckingResult] = []
        var timedOut = false
        expression.enumerateMatches(in: string, options: deadline == nil ? [] : [.reportProgress], range: fullRange) { match, _, stop in
            if let match { found.append(match) }
            if let deadline, ContinuousClock.now > deadline {
                timedOut = true
                stop.pointee = true
            }
        }
        if timedOut { return nil }
        return found.compactMap { match in
            let lower = match.range.location
            let upper = match.range.location + match.range.length
            guard match.range.location != NSNotFound, upper < scalarIndexAtUTF16.count else { return nil }
            return scalarIndexAtUTF16[lower]..<scalarIndexAtUTF16[upper]
        }
    }

    /// `text` with each of the ranges `found` (its matches) replaced by `content`.
    static func replacing(_ found: [Range<Int>], in text: Scalars, with content: Scalars) -> Scalars {
        guard !found.isEmpty else { return text }
        var result: Scalars = []
        result.reserveCapacity(text.count)
        var cursor = 0
        for range in found {
            result.append(contentsOf: text[cursor..<range.lowerBound])
            result.append(contentsOf: content)
            cursor = range.upperBound
        }
        result.append(contentsOf: text[cursor...])
        return result
    }
}

/// `tokenizers` compiles patterns with Oniguruma; Foundation uses ICU. The dialects agree on
/// what tokenizer files use, except `\s`: Oniguruma's is the White_Space property, ICU's
/// leaves out U+000B and U+0085. This rewrites `\s`/`\S` so both engines see the same class.
enum RegexDialect {
    private static let extraWhitespace = "\\x{0B}\\x{85}"

    static func icuPattern(fromOniguruma pattern: String) -> String {
        var output = ""
        var classDepth = 0
        var scalars = pattern.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            switch scalar {
            case "\\":
                guard let escaped = scalars.next() else {
                    output.unicodeScalars.append(scalar)
                    break
                }
                if escaped == "s" {
                    output += classDepth > 0 ? "\\s\(extraWhitespace)" : "[\\s\(extraWhitespace)]"
                } else if escaped == "S", classDepth == 0 {
                    output += "[^\\s\(extraWhitespace)]"
                } else {
                    output.unicodeScalars.append(scalar)
                    output.unicodeScalars.append(escaped)
                }
            case "[":
                classDepth += 1
                output.unicodeScalars.append(scalar)
            case "]":
                if classDepth > 0 { classDepth -= 1 }
                output.unicodeScalars.append(scalar)
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }
}

/// How a split keeps the delimiters it finds, as in `tokenizers`' SplitDelimiterBehavior.
enum SplitDelimiterBehavior: String {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"

    static func parse(_ cursor: JSONCursor) throws -> SplitDelimiterBehavior {
        let name = try cursor.string()
        guard let behavior = SplitDelimiterBehavior(rawValue: name) else {
            throw cursor.invalid("unknown split behavior \"\(name)\"")
        }
        return behavior
    }

    /// Turns the segments of a text (each flagged as a delimiter match or not, covering the
    /// whole text in order) into the ranges to keep.
    func keptRanges(_ segments: [(range: Range<Int>, isMatch: Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated:
            return segments.map(\.range)
        case .removed:
            return segments.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            var merged: [(range: Range<Int>, isMatch: Bool)] = []
            for segment in segments {
                if let last = merged.last, last.isMatch == segment.isMatch {
                    merged[merged.count - 1].range = last.range.lowerBound..<segment.range.upperBound
                } else {
                    merged.append(segment)
                }
            }
            return merged.map(\.range)
        case .mergedWithPrevious:
            var kept: [Range<Int>] = []
            var previousWasMatch = false
            for segment in segments {
                if segment.isMatch, !previousWasMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousWasMatch = segment.isMatch
            }
            return kept
        case .mergedWithNext:
            var kept: [Range<Int>] = []
            var previousWasMatch = false
            for segment in segments.reversed() {
                if segment.isMatch, !previousWasMatch, let last = kept.last {
                    kept[kept.count - 1] = segment.range.lowerBound..<last.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousWasMatch = segment.isMatch
            }
            return kept.reversed()
        }
    }
}

/// Splits `text` into alternating non-match / match segments covering all of it.
func segmentsCovering(_ text: Scalars, matches: [Range<Int>], invert: Bool) -> [(range: Range<Int>, isMatch: Bool)] {
    guard !text.isEmpty else { return [(0..<0, false)] }
    var segments: [(range: Range<Int>, isMatch: Bool)] = []
    var cursor = 0
    for match in matches {
        if cursor < match.lowerBound { segments.append((cursor..<match.lowerBound, invert)) }
        segments.append((match, !invert))
        cursor = match.upperBound
    }
    if cursor < text.count { segments.append((cursor..<text.count, invert)) }
    return segments
}
