import Foundation

/// One stretch of text on its way to the model.
struct TextPiece {
    var scalars: Scalars
    /// True when the piece begins at offset 0 of the caller's input. Metaspace's
    /// `prepend_scheme: "first"` prepends only to such a piece (`tokenizers` checks
    /// `offsets_original().0 == 0`), so text after a leading `<image>` gets no prefix.
    var startsAtInputStart: Bool

    /// The sub-pieces for `ranges` of this piece, empty ones dropped (as `tokenizers` does).
    func slices(_ ranges: [Range<Int>]) -> [TextPiece] {
        ranges.compactMap { range in
            range.isEmpty ? nil : TextPiece(scalars: Array(scalars[range]),
                                            startsAtInputStart: startsAtInputStart && range.lowerBound == 0)
        }
    }
}

/// Cuts normalized text into the words the model sees (`"pre_tokenizer"` in tokenizer.json).
protocol PreTokenizer {
    func split(_ piece: TextPiece) throws -> [TextPiece]
}

extension PreTokenizer {
    func split(_ pieces: [TextPiece]) throws -> [TextPiece] {
        try pieces.flatMap { try split($0) }
    }
}

enum PreTokenizerFactory {
    static func make(_ cursor: JSONCursor) throws -> PreTokenizer {
        let type = try cursor.stageType()
        switch type {
        case "Sequence":
            let children = try cursor.required("pretokenizers").array()
            return SequencePreTokenizer(children: try children.map(make))
        case "Metaspace":
            return try MetaspacePreTokenizer(cursor)
        case "ByteLevel":
            return ByteLevelPreTokenizer(addPrefixSpace: try cursor.bool("add_prefix_space", default: true),
                                         useRegex: try cursor.bool("use_regex", default: true))
        case "Split":
            return SplitPreTokenizer(pattern: try TextPattern.parse(try cursor.required("pattern")),
                                     behavior: try SplitDelimiterBehavior.parse(try cursor.required("behavior")),
                                     invert: try cursor.bool("invert", default: false))
        case "Digits":
            return DigitsPreTokenizer(individualDigits: try cursor.bool("individual_digits", default: false))
        case "WhitespaceSplit":
            return WhitespaceSplitPreTokenizer()
        case "Whitespace":
            return WhitespacePreTokenizer()
        default:
            throw TokenizerError.unknownStageType(file: cursor.file, path: cursor.path, type: type)
        }
    }
}

struct SequencePreTokenizer: PreTokenizer {
    let children: [PreTokenizer]

    func split(_ piece: TextPiece) throws -> [TextPiece] {
        try children.reduce([piece]) { pieces, child in try child.split(pieces) }
    }
}

/// When the SentencePiece word-boundary marker goes in front of a piece.
enum PrependScheme: String {
    case always, first, never
}

/// SentencePiece-style: spaces become the replacement character (`▁`), optionally prepended,
/// optionally split so each word keeps its leading marker.
struct MetaspacePreTokenizer: PreTokenizer {
    let replacement: Unicode.Scalar
    let prependScheme: PrependScheme
    let splitOnReplacement: Bool

    init(replacement: Unicode.Scalar, prependScheme: PrependScheme, splitOnReplacement: Bool) {
        self.replacement = replacement
        self.prependScheme = prependScheme
        self.splitOnReplacement = splitOnReplacement
    }

    init(_ cursor: JSONCursor) throws {
        let settings = try MetaspaceSettings(cursor)
        self.init(replacement: settings.replacement, prependScheme: settings.prependScheme,
                  splitOnReplacement: settings.split)
    }

    func split(_ piece: TextPiece) -> [TextPiece] {
        var text = piece.scalars.map { $0 == " " ? replacement : $0 }
        let shouldPrepend: Bool
        switch prependScheme {
        case .always: shouldPrepend = true
        case .first: shouldPrepend = piece.startsAtInputStart
        case .never: shouldPrepend = false
        }
        if shouldPrepend, text.first != replacement { text.insert(replacement, at: 0) }
        let replaced = TextPiece(scalars: text, startsAtInputStart: piece.startsAtInputStart)
        guard splitOnReplacement else { return [replaced] }
        let markers = text.indices.filter { text[$0] == replacement }.map { $0..<($0 + 1) }
        let segments = segmentsCovering(text, matches: markers, invert: false)
        return replaced.slices(SplitDelimiterBehavior.mergedWithNext.keptRanges(segments))
    }
}

/// The Metaspace fields shared by the pre-tokenizer and the decoder, old and new spellings.
struct MetaspaceSettings {
    let replacement: Unicode.Scalar
    let prependScheme: PrependScheme
    let split: Bool

    init(_ cursor: JSONCursor) throws {
        let replacementCursor = try cursor.optional("replacement") ?? cursor.required("str_rep")
        let replacementText = Scalars(try replacementCursor.string())
        guard replacementText.count == 1, let scalar = replacementText.first else {
            throw replacementCursor.invalid("the replacement must be exactly one character")
        }
        replacement = scalar
        if let schemeCursor = cursor.optional("prepend_scheme") {
            let name = try schemeCursor.string()
            guard let scheme = PrependScheme(rawValue: name) else {
                throw schemeCursor.invalid("unknown prepend_scheme \"\(name)\" (expected always, first or never)")
            }
            prependScheme = scheme
        } else {
            // Files written before prepend_scheme existed carry add_prefix_space instead.
            prependScheme = try cursor.bool("add_prefix_space", default: true) ? .always : .never
        }
        split = try cursor.bool("split", default: true)
    }
}

struct SplitPreTokenizer: PreTokenizer {
    let pattern: TextPattern
    let behavior: SplitDelimiterBehavior
    let invert: Bool

    func split(_ piece: TextPiece) throws -> [TextPiece] {
        let segments = segmentsCovering(piece.scalars, matches: try pattern.matches(in: piece.scalars), invert: invert)
        return piece.slices(behavior.keptRanges(segments))
    }
}

struct DigitsPreTokenizer: PreTokenizer {
    let individualDigits: Bool

    func split(_ piece: TextPiece) -> [TextPiece] {
        let digits = piece.scalars.indices.filter { CharacterClass.isNumber(piece.scalars[$0]) }.map { $0..<($0 + 1) }
        let segments = segmentsCovering(piece.scalars, matches: digits, invert: false)
        return piece.slices((individualDigits ? SplitDelimiterBehavior.isolated : .contiguous).keptRanges(segments))
    }
}

struct WhitespaceSplitPreTokenizer: PreTokenizer {
    func split(_ piece: TextPiece) -> [TextPiece] {
        let spaces = piece.scalars.indices.filter { CharacterClass.isWhitespace(piece.scalars[$0]) }.map { $0..<($0 + 1) }
        let segments = segmentsCovering(piece.scalars, matches: spaces, invert: false)
        return piece.slices(SplitDelimiterBehavior.removed.keptRanges(segments))
    }
}

/// `\w+|[^\w\s]+`, keeping the matches and dropping the whitespace between them.
struct WhitespacePreTokenizer: PreTokenizer {
    func split(_ piece: TextPiece) -> [TextPiece] {
        let text = piece.scalars
        var ranges: [Range<Int>] = []
        var index = 0
        while index < text.count {
            if CharacterClass.isWhitespace(text[index]) {
                index += 1
                continue
            }
            let isWord = CharacterClass.isWordCharacter(text[index])
            var end = index + 1
            while end < text.count, !CharacterClass.isWhitespace(text[end]),
                  CharacterClass.isWordCharacter(text[end]) == isWord {
                end += 1
            }
            ranges.append(index..<end)
            index = end
        }
        return piece.slices(ranges)
    }
}

/// GPT-2 style: split with the GPT-2 regex, then spell every UTF-8 byte as a printable
/// character so the vocabulary never needs raw bytes.
struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool

    func split(_ piece: TextPiece) -> [TextPiece] {
        var working = piece
        // Like `tokenizers`, every piece (not only the first) gets the space.
        if addPrefixSpace, working.scalars.first != " " { working.scalars.insert(" ", at: 0) }
        let words = useRegex ? working.slices(Self.gpt2Ranges(working.scalars)) : [working]
        return words.map { word in
            var mapped: Scalars = []
            mapped.reserveCapacity(word.scalars.count)
            for byte in word.scalars.utf8Bytes { mapped.append(ByteLevelAlphabet.scalarForByte[Int(byte)]) }
            return TextPiece(scalars: mapped, startsAtInputStart: word.startsAtInputStart)
        }
    }

    /// Matches of `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    /// written out by hand: same alternatives in the same order, no regex engine needed.
    static func gpt2Ranges(_ text: Scalars) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        let count = text.count
        func isOther(_ scalar: Unicode.Scalar) -> Bool {
            !CharacterClass.isWhitespace(scalar) && !CharacterClass.isLetter(scalar) && !CharacterClass.isNumber(scalar)
        }
        while start < count {
            let first = text[start]
            var end = start
            if first == "'", start + 1 < count {
                let second = text[start + 1]
                if second == "s" || second == "t" || second == "m" || second == "d" {
                    end = start + 2
                } else if start + 2 < count {
                    let third = text[start + 2]
                    if (second == "r" && third == "e") || (second == "v" && third == "e") || (second == "l" && third == "l") {
                        end = start + 3
                    }
                }
            }
            if end == start {
                let body = first == " " ? start + 1 : start
                if body < count {
                    let lead = text[body]
                    let belongs: ((Unicode.Scalar) -> Bool)?
                    if CharacterClass.isLetter(lead) {
                        belongs = CharacterClass.isLetter
                    } else if CharacterClass.isNumber(lead) {
                        belongs = CharacterClass.isNumber
                    } else if isOther(lead) {
                        belongs = isOther
                    } else {
                        belongs = nil
                    }
                    if let belongs {
                        end = body + 1
                        while end < count, belongs(text[end]) { end += 1 }
                    }
                }
            }
            if end == start {
                // Whitespace: a run followed by a non-space gives its last space to the next word.
                var runEnd = start
                while runEnd < count, CharacterClass.isWhitespace(text[runEnd]) { runEnd += 1 }
                if runEnd == start {
                    end = start + 1  // unreachable in practice: every scalar is in one class
                } else if runEnd == count || runEnd - start == 1 {
                    end = runEnd
                } else {
                    end = runEnd - 1
                }
            }
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }
}

/// GPT-2's reversible byte-to-character table.
enum ByteLevelAlphabet {
    static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var nextUnprintable: UInt32 = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            let value = printable ? UInt32(byte) : nextUnprintable
            if !printable { nextUnprintable += 1 }
            table[byte] = Unicode.Scalar(value) ?? " "
        }
        return table
    }()

    static let byteForScalar: [Unicode.Scalar: UInt8] = {
        var inverse: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in scalarForByte.enumerated() { inverse[scalar] = UInt8(byte) }
        return inverse
    }()
}
