import FileAccess
import Foundation

/// Cuts a BPE `tokenizer.json` (LLaMA's, with byte fallback) down to the tokens a body of text
/// can use, so a small model trained on that text needs a small embedding table and lm_head.
///
/// What is kept: the model's special tokens (`<unk>`, `<s>`, `</s>`), all 256 byte-fallback
/// tokens `<0x00>`…`<0xFF>`, every vocabulary token that is a substring of some text (in its
/// normalized, `▁`-for-space spelling, and of each piece between added tokens with the
/// normalizer's `▁` prepended), and the merges whose two parts and result are all kept. Every
/// symbol BPE can form while encoding one of the texts is such a substring, and each merge it
/// applies joins two of them into a third, so the texts encode exactly as before (checked
/// afterwards, text by text); any other text still encodes, through shorter pieces or bytes.
///
/// Ids are renumbered densely in the original order (so specials and bytes keep 0…258), and the
/// added tokens outside the vocabulary (`<image>`, `<pad>`) follow it in their original order.
/// The same ids are rewritten in `added_tokens`, the post-processor's `special_tokens` and
/// tokenizer_config.json's `added_tokens_decoder`.
public enum VocabularyPruning {
    public struct Summary: Sendable {
        /// Old id → new id of every token kept (vocabulary and added tokens).
        public let newIDs: [Int: Int]
        public let vocabularyCount: Int
        public let mergeCount: Int
        /// Vocabulary plus added tokens outside it: what a model's `vocab_size` must cover.
        public let totalCount: Int
        public let textsChecked: Int
    }

    /// Reads `tokenizer.json` (and tokenizer_config.json, if there) from `source`, writes the
    /// pruned pair to `output` (created if missing), and checks that every text encodes to the
    /// same tokens as before.
    public static func prune(source: URL, texts: [String], output: URL) throws -> Summary {
        let sourceFile = source.appendingPathComponent("tokenizer.json")
        let tokenizerJSON = try readObject(sourceFile)
        guard var model = tokenizerJSON["model"] as? [String: Any], (model["type"] as? String ?? "BPE") == "BPE",
              let vocabulary = model["vocab"] as? [String: Any], let merges = model["merges"] as? [Any]
        else {
            throw TokenizerError.invalidValue(file: sourceFile.path, path: "model", reason: "vocabulary pruning needs a BPE model with vocab and merges")
        }
        let vocabularyIDs = try vocabulary.mapValues { value -> Int in
            guard let id = (value as? NSNumber)?.intValue else {
                throw TokenizerError.wrongType(file: sourceFile.path, path: "model.vocab", expected: "integer ids", found: "\(value)")
            }
            return id
        }
        let addedTokens = tokenizerJSON["added_tokens"] as? [[String: Any]] ?? []
        let addedContents = addedTokens.compactMap { $0["content"] as? String }

        // Candidate symbols: substrings of the normalized texts up to the longest token.
        let longest = vocabularyIDs.keys.map(\.unicodeScalars.count).max() ?? 1
        var candidates = Set<String>()
        for text in Set(texts) {
            var spellings = ["▁" + text.replacingOccurrences(of: " ", with: "▁")]
            var pieces = [text]
            for content in addedContents { pieces = pieces.flatMap { $0.components(separatedBy: content) } }
            spellings += pieces.map { "▁" + $0.replacingOccurrences(of: " ", with: "▁") }
            for spelling in spellings {
                let scalars = Array(spelling.unicodeScalars)
                for start in scalars.indices {
                    var symbol = String.UnicodeScalarView()
                    for scalar in scalars[start..<min(scalars.count, start + longest)] {
                        symbol.append(scalar)
                        candidates.insert(String(symbol))
                    }
                }
            }
        }
        let byteTokens = Set((0..<256).map { String(format: "<0x%02X>", $0) })
        let specialTokens = Set(addedContents)
        let keptTokens = vocabularyIDs.keys.filter { candidates.contains($0) || byteTokens.contains($0) || specialTokens.contains($0) }
        var newIDs: [Int: Int] = [:]
        var newVocabulary: [String: Int] = [:]
        for (newID, token) in keptTokens.sorted(by: { vocabularyIDs[$0]! < vocabularyIDs[$1]! }).enumerated() {
            newVocabulary[token] = newID
            newIDs[vocabularyIDs[token]!] = newID
        }
        var nextID = newVocabulary.count
        for token in addedTokens.sorted(by: { ($0["id"] as? Int ?? 0) < ($1["id"] as? Int ?? 0) }) {
            guard let id = token["id"] as? Int, let content = token["content"] as? String else { continue }
            if newIDs[id] == nil, newVocabulary[content] == nil {
                newIDs[id] = nextID
                nextID += 1
            }
        }

        var newMerges: [Any] = []
        for merge in merges {
            let parts: [String]
            if let pair = merge as? [String] { parts = pair } else if let text = merge as? String {
                parts = text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            } else { parts = [] }
            guard parts.count == 2 else {
                throw TokenizerError.invalidValue(file: sourceFile.path, path: "model.merges", reason: "a merge is not two tokens: \(merge)")
            }
            if newVocabulary[parts[0]] != nil, newVocabulary[parts[1]] != nil, newVocabulary[parts[0] + parts[1]] != nil {
                newMerges.append(merge)
            }
        }

        model["vocab"] = newVocabulary
        model["merges"] = newMerges
        var pruned = tokenizerJSON
        pruned["model"] = model
        pruned["added_tokens"] = addedTokens.map { token -> [String: Any] in
            var token = token
            if let id = token["id"] as? Int { token["id"] = newIDs[id] ?? id }
            return token
        }
        if var postProcessor = pruned["post_processor"] as? [String: Any] {
            pruned["post_processor"] = renumberSpecialTokens(&postProcessor, newIDs: newIDs)
        }
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let outputFile = output.appendingPathComponent("tokenizer.json")
        try writeObject(pruned, to: outputFile)

        let sourceConfig = source.appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: sourceConfig.path) {
            var config = try readObject(sourceConfig)
            if let decoderTable = config["added_tokens_decoder"] as? [String: Any] {
                var renumbered: [String: Any] = [:]
                for (key, value) in decoderTable {
                    let id = Int(key).map { newIDs[$0] ?? $0 }
                    renumbered[id.map(String.init) ?? key] = value
                }
                config["added_tokens_decoder"] = renumbered
            }
            try writeObject(config, to: output.appendingPathComponent("tokenizer_config.json"))
        }

        // The promise: each text encodes to the same tokens, renumbered.
        let before = try Tokenizer(tokenizerJSON: sourceFile)
        let after = try Tokenizer(tokenizerJSON: outputFile)
        for text in Set(texts) {
            let source = try before.encode(text)
            let found = try after.encode(text)
            if source.map({ newIDs[$0] }) != found.map(Optional.some) {
                throw TokenizerError.invalidValue(
                    file: outputFile.path, path: "model",
                    reason: "pruned vocabulary encodes \(String(reflecting: text)) as \(found), not as the source's \(source)")
            }
        }
        return Summary(
            newIDs: newIDs, vocabularyCount: newVocabulary.count, mergeCount: newMerges.count, totalCount: nextID,
            textsChecked: Set(texts).count)
    }

    /// TemplateProcessing's `special_tokens: {name: {ids: [...]}}`; other processors (and a
    /// `Sequence` of them) are walked through.
    private static func renumberSpecialTokens(_ processor: inout [String: Any], newIDs: [Int: Int]) -> [String: Any] {
        if var specials = processor["special_tokens"] as? [String: Any] {
            for (name, value) in specials {
                guard var entry = value as? [String: Any], let ids = entry["ids"] as? [Int] else { continue }
                entry["ids"] = ids.map { newIDs[$0] ?? $0 }
                specials[name] = entry
            }
            processor["special_tokens"] = specials
        }
        if let children = processor["processors"] as? [[String: Any]] {
            processor["processors"] = children.map { child -> [String: Any] in
                var child = child
                return renumberSpecialTokens(&child, newIDs: newIDs)
            }
        }
        return processor
    }

    private static func readObject(_ file: URL) throws -> [String: Any] {
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw TokenizerError.unreadableFile(file: file.path, reason: describeFoundationError(error))
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError.wrongType(file: file.path, path: "", expected: "a JSON object", found: "something else")
        }
        return object
    }

    private static func writeObject(_ object: [String: Any], to file: URL) throws {
        do {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            try data.write(to: file, options: .atomic)
        } catch {
            throw TokenizerError.unreadableFile(file: file.path, reason: "cannot write: \(describeFoundationError(error))")
        }
    }
}
