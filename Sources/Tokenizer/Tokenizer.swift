import FileAccess
import Foundation

/// A Hugging Face `tokenizer.json` pipeline that gives the same ids and text as the Python
/// `tokenizers` library: added tokens are split out of the raw text, the rest is normalized,
/// pre-tokenized, run through the model (BPE), and wrapped by the post-processor.
///
/// Safe to share between threads: all state is immutable apart from the BPE word cache,
/// which is locked.
public final class Tokenizer: @unchecked Sendable {
    private let model: TokenizationModel
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let postProcessor: PostProcessor?
    private let decoder: Decoder?
    /// How each added token reads when decoding: its content, or for a `normalized` token the
    /// normalizer's output when that differs (what `tokenizers` 0.23 hands to the decoder).
    private let addedTokenStringsByID: [Int: String]
    private let addedTokenIDsByContent: [[UInt8]: Int]
    private let specialTokenContents: Set<[UInt8]>
    /// Added tokens with `normalized: false`, searched in the raw input.
    private let rawTokenMatcher: AddedTokenMatcher
    /// Added tokens with `normalized: true`, searched (in normalized form) after normalization.
    private let normalizedTokenMatcher: AddedTokenMatcher

    /// Beginning-of-sequence id: `bos_token` from a tokenizer_config.json beside the file when
    /// there is one, otherwise the first special token the post-processor puts in front,
    /// otherwise a well-known name (`<s>`, `<|begin_of_text|>`, `<bos>`).
    public let bosTokenID: Int?
    /// End-of-sequence id: `eos_token` from tokenizer_config.json, otherwise a well-known name
    /// (`</s>`, `<|end_of_text|>`, `<|endoftext|>`, `<eos>`).
    public let eosTokenID: Int?
    /// `pad_token` from tokenizer_config.json, when given.
    public let padTokenID: Int?
    /// Distinct ids: the model vocabulary plus added tokens outside it (32002 for llava-1.5).
    public let vocabularySize: Int

    /// Loads `tokenizer.json`; a `tokenizer_config.json` in the same folder, if present, names
    /// the BOS/EOS/PAD tokens.
    public convenience init(tokenizerJSON url: URL) throws {
        let data = try Self.readFile(url)
        let configURL = url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
        let configData = FileManager.default.fileExists(atPath: configURL.path) ? try Self.readFile(configURL) : nil
        try self.init(data: data, configData: configData, fileName: url.lastPathComponent,
                      configFileName: configURL.lastPathComponent)
    }

    /// The bytes of a regular file (a FIFO or directory is refused before `open`), or an error naming it.
    private static func readFile(_ url: URL) throws -> Data {
        do { return try readFileData(url) } catch { throw TokenizerError.unreadableFile(file: url.path, reason: error.reason) }
    }

    /// Loads a tokenizer.json held in memory; `configData` is an optional tokenizer_config.json.
    public convenience init(data: Data, configData: Data? = nil) throws {
        try self.init(data: data, configData: configData, fileName: "tokenizer.json",
                      configFileName: "tokenizer_config.json")
    }

    private convenience init(data: Data, configData: Data?, fileName: String, configFileName: String) throws {
        let root = try JSONParser.parse(data, file: fileName)
        let config = try configData.map { JSONCursor(root: try JSONParser.parse($0, file: configFileName),
                                                     file: configFileName) }
        try self.init(json: root, file: fileName, config: config)
    }

    init(json: JSONValue, file: String, config: JSONCursor?) throws {
        let root = JSONCursor(root: json, file: file)
        guard case .object = json else { throw root.wrongType("an object") }
        let model = try ModelFactory.make(try root.required("model"))
        let normalizer = try root.optional("normalizer").map(NormalizerFactory.make)
        self.model = model
        self.normalizer = normalizer
        preTokenizer = try root.optional("pre_tokenizer").map(PreTokenizerFactory.make)
        postProcessor = try root.optional("post_processor").map(PostProcessorFactory.make)
        decoder = try root.optional("decoder").map(DecoderFactory.make)

        let addedTokens = try Self.readAddedTokens(root.optional("added_tokens"), model: model)
        addedTokenStringsByID = try addedTokens.byID.mapValues { token in
            guard token.normalized, let normalizer else { return token.content }
            return try normalizer.normalize(Scalars(token.content)).string
        }
        addedTokenIDsByContent = addedTokens.idsByContent
        specialTokenContents = addedTokens.specialContents
        let rawTokens = addedTokens.matchOrder.filter { !$0.normalized }
        rawTokenMatcher = AddedTokenMatcher(tokens: rawTokens, patterns: rawTokens.map { Scalars($0.content) })
        let normalizedTokens = addedTokens.matchOrder.filter(\.normalized)
        // Normalized added tokens are searched for in their normalized spelling (with the
        // legacy LLaMA normalizer, "foo" is looked for as "▁foo").
        normalizedTokenMatcher = AddedTokenMatcher(
            tokens: normalizedTokens,
            patterns: try normalizedTokens.map { try normalizer?.normalize(Scalars($0.content)) ?? Scalars($0.content) })

        vocabularySize = model.vocabularyCount + addedTokens.byID.keys.filter { model.token(forID: $0) == nil }.count

        let lookUp: (String) -> Int? = { name in
            addedTokens.idsByContent[Array(name.utf8)] ?? model.tokenID(forBytes: Array(name.utf8))
        }
        if let config {
            bosTokenID = try Self.configuredToken("bos_token", in: config).flatMap(lookUp)
            eosTokenID = try Self.configuredToken("eos_token", in: config).flatMap(lookUp)
            padTokenID = try Self.configuredToken("pad_token", in: config).flatMap(lookUp)
        } else {
            bosTokenID = postProcessor?.leadingSpecialTokenIDs.first
                ?? ["<s>", "<|begin_of_text|>", "<bos>"].lazy.compactMap(lookUp).first
            eosTokenID = ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"].lazy.compactMap(lookUp).first
            padTokenID = nil
        }
    }

    /// `"bos_token": "<s>"` or `"bos_token": {"content": "<s>", ...}`.
    private static func configuredToken(_ key: String, in config: JSONCursor) throws -> String? {
        guard let entry = config.optional(key) else { return nil }
        if case .string(let name) = entry.value { return name }
        return try entry.required("content").string()
    }

    private struct AddedTokenTable {
        var byID: [Int: AddedToken] = [:]
        var idsByContent: [[UInt8]: Int] = [:]
        /// Special tokens first, then the others, each in file order: the order `tokenizers`
        /// feeds its matchers, which decides ties between identical patterns.
        var matchOrder: [AddedToken] = []
        /// Contents of the special tokens, which decoding can skip.
        var specialContents = Set<[UInt8]>()
    }

    /// Reads `added_tokens` the way `tokenizers` replays them on load: the id comes from the
    /// model vocabulary when the content is there, otherwise the next id after the vocabulary
    /// (the file's `"id"` is only checked, as `tokenizers` only warns about it).
    private static func readAddedTokens(_ cursor: JSONCursor?, model: TokenizationModel) throws -> AddedTokenTable {
        var table = AddedTokenTable()
        guard let cursor else { return table }
        var specials: [AddedToken] = []
        var others: [AddedToken] = []
        var specialContents = Set<[UInt8]>()
        for entry in try cursor.array() {
            let content = try entry.required("content").string()
            let special = try entry.bool("special", default: false)
            let contentBytes = Array(content.utf8)
            guard !contentBytes.isEmpty else { continue }
            let id = table.idsByContent[contentBytes] ?? model.tokenID(forBytes: contentBytes) ?? {
                guard let largest = table.idsByContent.values.max() else { return model.vocabularyCount }
                return largest >= model.vocabularyCount || model.vocabularyCount == 0 ? largest + 1 : model.vocabularyCount
            }()
            let token = AddedToken(
                id: id, content: content,
                singleWord: try entry.bool("single_word", default: false),
                leftStrip: try entry.bool("lstrip", default: false),
                rightStrip: try entry.bool("rstrip", default: false),
                normalized: try entry.bool("normalized", default: !special),
                special: special)
            table.idsByContent[contentBytes] = id
            table.byID[id] = token
            if special {
                if specialContents.insert(contentBytes).inserted { specials.append(token) }
            } else if !specialContents.contains(contentBytes) {
                others.append(token)
            }
        }
        // When a content is listed twice, `tokenizers` matches with the entry's `normalized`
        // flag but reads the other flags and the id from the last entry for that content.
        table.matchOrder = (specials + others).compactMap { token in
            guard let id = table.idsByContent[Array(token.content.utf8)], let latest = table.byID[id] else {
                return nil
            }
            return AddedToken(id: id, content: token.content, singleWord: latest.singleWord,
                              leftStrip: latest.leftStrip, rightStrip: latest.rightStrip,
                              normalized: token.normalized, special: latest.special)
        }
        table.specialContents = specialContents
        return table
    }

    /// Token ids for `text`. With `addSpecialTokens`, the post-processor's template is applied
    /// (for LLaMA: `<s>` in front). Throws when a regular expression of tokenizer.json exceeds
    /// its time limit on this text (catastrophic backtracking).
    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
        var ids: [Int] = []
        let input = TextPiece(scalars: Scalars(text), startsAtInputStart: true)
        for segment in rawTokenMatcher.split(input) {
            switch segment {
            case let .addedToken(id):
                ids.append(id)
            case let .text(piece):
                let normalized = TextPiece(scalars: try normalizer?.normalize(piece.scalars) ?? piece.scalars,
                                           startsAtInputStart: piece.startsAtInputStart)
                for innerSegment in normalizedTokenMatcher.split(normalized) {
                    switch innerSegment {
                    case let .addedToken(id):
                        ids.append(id)
                    case let .text(textPiece):
                        let words = try preTokenizer?.split(textPiece) ?? [textPiece]
                        for word in words { ids.append(contentsOf: model.tokenize(word.scalars)) }
                    }
                }
            }
        }
        guard addSpecialTokens, let postProcessor else { return ids }
        return postProcessor.addSpecialTokens(to: ids)
    }

    /// Text for `ids`. Ids outside the vocabulary are skipped, as in `tokenizers`.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = self.token(forID: id) else { continue }
            if skipSpecialTokens, specialTokenContents.contains(Array(token.utf8)) { continue }
            tokens.append(token)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }

    /// The id of a token string (added tokens first, then the model vocabulary), compared
    /// byte for byte.
    public func tokenID(_ token: String) -> Int? {
        let bytes = Array(token.utf8)
        return addedTokenIDsByContent[bytes] ?? model.tokenID(forBytes: bytes)
    }

    /// The token string for an id, or nil when no token has it. For an added token with
    /// `normalized: true` this is its normalized spelling, as in `tokenizers`.
    public func token(forID id: Int) -> String? {
        addedTokenStringsByID[id] ?? model.token(forID: id)
    }

    /// Whether decoding with `skipSpecialTokens` drops `id`: its token string is the content of
    /// a special added token. (A special token with `normalized: true` whose normalized
    /// spelling differs is not dropped; `tokenizers` behaves the same way.)
    public func isSpecialToken(_ id: Int) -> Bool {
        guard let token = token(forID: id) else { return false }
        return specialTokenContents.contains(Array(token.utf8))
    }
}
