import Foundation

/// Adds the special tokens around an encoded sequence (`"post_processor"` in tokenizer.json).
/// Only called when the caller asks for special tokens.
protocol PostProcessor {
    func addSpecialTokens(to ids: [Int]) -> [Int]
    /// The special token ids placed before the sequence, in order (BOS for LLaMA).
    var leadingSpecialTokenIDs: [Int] { get }
}

enum PostProcessorFactory {
    static func make(_ cursor: JSONCursor) throws -> PostProcessor {
        let type = try cursor.stageType()
        switch type {
        case "TemplateProcessing":
            return try TemplateProcessing(cursor)
        case "ByteLevel":
            // Its only job in `tokenizers` is offset trimming; ids are untouched.
            return IdentityPostProcessor()
        case "Sequence":
            let children = try cursor.required("processors").array()
            return SequencePostProcessor(children: try children.map(make))
        default:
            throw TokenizerError.unknownStageType(file: cursor.file, path: cursor.path, type: type)
        }
    }
}

struct IdentityPostProcessor: PostProcessor {
    func addSpecialTokens(to ids: [Int]) -> [Int] { ids }
    var leadingSpecialTokenIDs: [Int] { [] }
}

struct SequencePostProcessor: PostProcessor {
    let children: [PostProcessor]

    func addSpecialTokens(to ids: [Int]) -> [Int] {
        children.reduce(ids) { $1.addSpecialTokens(to: $0) }
    }

    var leadingSpecialTokenIDs: [Int] {
        children.reversed().flatMap(\.leadingSpecialTokenIDs)
    }
}

/// `{"single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": ...}`.
/// Only the single-sequence template is used: this tokenizer encodes one text at a time.
struct TemplateProcessing: PostProcessor {
    enum Piece {
        case specialTokens([Int])
        case sequence
    }

    let single: [Piece]

    init(_ cursor: JSONCursor) throws {
        var idsBySpecialName: [[UInt8]: [Int]] = [:]
        if let specials = cursor.optional("special_tokens") {
            for (name, entry) in try specials.entries() {
                idsBySpecialName[Array(name.utf8)] = try entry.required("ids").array().map { try $0.int() }
            }
        }
        let singleCursor = try cursor.required("single")
        single = try singleCursor.array().map { pieceCursor in
            if let special = pieceCursor.optional("SpecialToken") {
                let name = try special.required("id").string()
                guard let ids = idsBySpecialName[Array(name.utf8)] else {
                    throw special.invalid("special token \(name.debugDescription) is missing from special_tokens")
                }
                return .specialTokens(ids)
            }
            if let sequence = pieceCursor.optional("Sequence") {
                let name = try sequence.required("id").string()
                guard name == "A" || name == "B" else { throw sequence.invalid("sequence id must be A or B") }
                return .sequence
            }
            throw pieceCursor.invalid("a template piece must be {\"SpecialToken\": ...} or {\"Sequence\": ...}")
        }
    }

    func addSpecialTokens(to ids: [Int]) -> [Int] {
        var output: [Int] = []
        output.reserveCapacity(ids.count + 4)
        for piece in single {
            switch piece {
            case let .specialTokens(specialIDs): output.append(contentsOf: specialIDs)
            case .sequence: output.append(contentsOf: ids)
            }
        }
        return output
    }

    var leadingSpecialTokenIDs: [Int] {
        var leading: [Int] = []
        for piece in single {
            guard case let .specialTokens(ids) = piece else { break }
            leading.append(contentsOf: ids)
        }
        return leading
    }
}
