import Foundation

/// Turns token strings back into text (`"decoder"` in tokenizer.json). Like `tokenizers`, each
/// decoder maps a list of token strings to a new list; the final text is their concatenation.
protocol Decoder {
    func decodeChain(_ tokens: [String]) -> [String]
}

enum DecoderFactory {
    static func make(_ cursor: JSONCursor) throws -> Decoder {
        let type = try cursor.stageType()
        switch type {
        case "Sequence":
            let children = try cursor.required("decoders").array()
            return SequenceDecoder(children: try children.map(make))
        case "Replace":
            return ReplaceDecoder(pattern: try TextPattern.parse(try cursor.required("pattern")),
                                  content: Scalars(try cursor.required("content").string()))
        case "ByteFallback":
            return ByteFallbackDecoder()
        case "Fuse":
            return FuseDecoder()
        case "Strip":
            let contentCursor = try cursor.required("content")
            let content = Scalars(try contentCursor.string())
            guard content.count == 1, let scalar = content.first else {
                throw contentCursor.invalid("Strip content must be exactly one character")
            }
            let start = try cursor.int("start", default: 0)
            let stop = try cursor.int("stop", default: 0)
            guard start >= 0, stop >= 0 else { throw cursor.invalid("Strip start and stop must be non-negative") }
            return StripDecoder(content: scalar, start: start, stop: stop)
        case "Metaspace":
            let settings = try MetaspaceSettings(cursor)
            return MetaspaceDecoder(replacement: settings.replacement, prependScheme: settings.prependScheme)
        case "ByteLevel":
            return ByteLevelDecoder()
        default:
            throw TokenizerError.unknownStageType(file: cursor.file, path: cursor.path, type: type)
        }
    }
}

struct SequenceDecoder: Decoder {
    let children: [Decoder]

    func decodeChain(_ tokens: [String]) -> [String] {
        children.reduce(tokens) { $1.decodeChain($0) }
    }
}

struct ReplaceDecoder: Decoder {
    let pattern: TextPattern
    let content: Scalars

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { token in
            let text = Scalars(token)
            return TextPattern.replacing(pattern.unboundedMatches(in: text), in: text, with: content).string
        }
    }
}

/// Joins runs of `<0xNN>` tokens into the text their bytes spell. A run that is not valid
/// UTF-8 becomes one U+FFFD per byte, as in `tokenizers`.
struct ByteFallbackDecoder: Decoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        var output: [String] = []
        output.reserveCapacity(tokens.count)
        var pendingBytes: [UInt8] = []
        func flush() {
            guard !pendingBytes.isEmpty else { return }
            if pendingBytes.withUnsafeBufferPointer(firstInvalidUTF8Offset) == nil {
                output.append(String(decoding: pendingBytes, as: UTF8.self))
            } else {
                output.append(contentsOf: repeatElement("\u{FFFD}", count: pendingBytes.count))
            }
            pendingBytes.removeAll(keepingCapacity: true)
        }
        for token in tokens {
            if let byte = Self.byteValue(of: token) {
                pendingBytes.append(byte)
            } else {
                flush()
                output.append(token)
            }
        }
        flush()
        return output
    }

    /// The byte a `<0xNN>` token stands for. Mirrors Rust's `u8::from_str_radix(.., 16)` on the
    /// two middle bytes, which also takes lowercase digits and a `+` sign before one digit.
    static func byteValue(of token: String) -> UInt8? {
        let bytes = Array(token.utf8)
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "<"), bytes[1] == UInt8(ascii: "0"),
              bytes[2] == UInt8(ascii: "x"), bytes[5] == UInt8(ascii: ">") else { return nil }
        if bytes[3] == UInt8(ascii: "+") { return hexDigit(bytes[4]) }
        guard let high = hexDigit(bytes[3]), let low = hexDigit(bytes[4]) else { return nil }
        return high << 4 | low
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

struct FuseDecoder: Decoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        [tokens.joined()]
    }
}

/// Removes up to `start` leading and `stop` trailing copies of `content` from each token.
struct StripDecoder: Decoder {
    let content: Unicode.Scalar
    let start: Int
    let stop: Int

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { token in
            let scalars = Scalars(token)
            var lower = 0
            while lower < min(start, scalars.count), scalars[lower] == content { lower += 1 }
            var upper = scalars.count
            var removed = 0
            while removed < stop, upper > 0, scalars[upper - 1] == content {
                upper -= 1
                removed += 1
            }
            // `tokenizers` panics when the two cuts cross; an empty token is the sensible result.
            return lower < upper ? Array(scalars[lower..<upper]).string : ""
        }
    }
}

/// Replacement characters become spaces, except that every one in the first token is dropped
/// when a prefix was being prepended (`tokenizers` behaviour, not only the leading one).
struct MetaspaceDecoder: Decoder {
    let replacement: Unicode.Scalar
    let prependScheme: PrependScheme

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { index, token in
            var output = String.UnicodeScalarView()
            for scalar in token.unicodeScalars {
                if scalar == replacement {
                    if index == 0, prependScheme != .never { continue }
                    output.append(" ")
                } else {
                    output.append(scalar)
                }
            }
            return String(output)
        }
    }
}

/// Maps GPT-2 byte characters back to bytes and decodes them as UTF-8 (invalid sequences
/// become U+FFFD). A token with any character outside the byte alphabet passes through as is.
struct ByteLevelDecoder: Decoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        var bytes: [UInt8] = []
        for token in tokens {
            var tokenBytes: [UInt8] = []
            var allMapped = true
            for scalar in token.unicodeScalars {
                guard let byte = ByteLevelAlphabet.byteForScalar[scalar] else {
                    allMapped = false
                    break
                }
                tokenBytes.append(byte)
            }
            bytes.append(contentsOf: allMapped ? tokenBytes : Array(token.utf8))
        }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}
