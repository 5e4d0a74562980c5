import Foundation

/// Rewrites text before pre-tokenization (`"normalizer"` in tokenizer.json).
protocol Normalizer {
    func normalize(_ text: Scalars) throws -> Scalars
}

enum NormalizerFactory {
    static func make(_ cursor: JSONCursor) throws -> Normalizer {
        let type = try cursor.stageType()
        switch type {
        case "Sequence":
            let children = try cursor.required("normalizers").array()
            return SequenceNormalizer(children: try children.map(make))
        case "Prepend":
            return PrependNormalizer(prefix: Scalars(try cursor.required("prepend").string()))
        case "Replace":
            return ReplaceNormalizer(pattern: try TextPattern.parse(try cursor.required("pattern")),
                                     content: Scalars(try cursor.required("content").string()))
        case "NFC": return UnicodeFormNormalizer(form: .nfc)
        case "NFD": return UnicodeFormNormalizer(form: .nfd)
        case "NFKC": return UnicodeFormNormalizer(form: .nfkc)
        case "NFKD": return UnicodeFormNormalizer(form: .nfkd)
        case "Lowercase": return LowercaseNormalizer()
        case "Strip":
            return StripNormalizer(stripLeft: try cursor.bool("strip_left", default: true),
                                   stripRight: try cursor.bool("strip_right", default: true))
        case "StripAccents": return StripAccentsNormalizer()
        default:
            throw TokenizerError.unknownStageType(file: cursor.file, path: cursor.path, type: type)
        }
    }
}

struct SequenceNormalizer: Normalizer {
    let children: [Normalizer]

    func normalize(_ text: Scalars) throws -> Scalars {
        try children.reduce(text) { try $1.normalize($0) }
    }
}

/// Legacy LLaMA files put the SentencePiece dummy prefix here rather than in a pre-tokenizer;
/// it applies to every piece between added tokens, but never to an empty one.
struct PrependNormalizer: Normalizer {
    let prefix: Scalars

    func normalize(_ text: Scalars) -> Scalars {
        text.isEmpty ? text : prefix + text
    }
}

struct ReplaceNormalizer: Normalizer {
    let pattern: TextPattern
    let content: Scalars

    func normalize(_ text: Scalars) throws -> Scalars {
        TextPattern.replacing(try pattern.matches(in: text), in: text, with: content)
    }
}

struct UnicodeFormNormalizer: Normalizer {
    enum Form { case nfc, nfd, nfkc, nfkd }
    let form: Form

    func normalize(_ text: Scalars) -> Scalars {
        let string = text.string
        let normalized: String
        switch form {
        case .nfc: normalized = string.precomposedStringWithCanonicalMapping
        case .nfd: normalized = string.decomposedStringWithCanonicalMapping
        case .nfkc: normalized = string.precomposedStringWithCompatibilityMapping
        case .nfkd: normalized = string.decomposedStringWithCompatibilityMapping
        }
        return Scalars(normalized)
    }
}

/// Per-scalar full lowercase mapping, like Rust's `char::to_lowercase` (no context-dependent
/// final sigma, which is what `tokenizers` does too).
struct LowercaseNormalizer: Normalizer {
    func normalize(_ text: Scalars) -> Scalars {
        var result: Scalars = []
        result.reserveCapacity(text.count)
        for scalar in text {
            if scalar.isASCII {
                result.append(scalar.properties.isUppercase ? Unicode.Scalar(scalar.value + 32) ?? scalar : scalar)
            } else {
                result.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return result
    }
}

struct StripNormalizer: Normalizer {
    let stripLeft: Bool
    let stripRight: Bool

    func normalize(_ text: Scalars) -> Scalars {
        var lower = 0
        var upper = text.count
        if stripLeft { while lower < upper, CharacterClass.isWhitespace(text[lower]) { lower += 1 } }
        if stripRight { while upper > lower, CharacterClass.isWhitespace(text[upper - 1]) { upper -= 1 } }
        return Array(text[lower..<upper])
    }
}

/// Drops nonspacing marks (category Mn), as `tokenizers`' StripAccents does; usually after NFD.
struct StripAccentsNormalizer: Normalizer {
    func normalize(_ text: Scalars) -> Scalars {
        text.filter { $0.properties.generalCategory != .nonspacingMark }
    }
}
