import Foundation

/// Turns one pre-tokenized word into ids (`"model"` in tokenizer.json).
protocol TokenizationModel: AnyObject {
    func tokenize(_ word: Scalars) -> [Int]
    func tokenID(forBytes token: [UInt8]) -> Int?
    func token(forID id: Int) -> String?
    /// Number of entries in the vocabulary (what `tokenizers` calls the model's vocab size).
    var vocabularyCount: Int { get }
}

enum ModelFactory {
    static func make(_ cursor: JSONCursor) throws -> TokenizationModel {
        // Old files leave out "type"; `tokenizers` then recognises BPE by its merges.
        let type = try cursor.optional("type")?.string() ?? (cursor.optional("merges") != nil ? "BPE" : "")
        switch type {
        case "BPE":
            return try BPEModel(cursor)
        case "":
            throw TokenizerError.missingKey(file: cursor.file, path: "\(cursor.path).type")
        default:
            throw TokenizerError.unknownStageType(file: cursor.file, path: cursor.path, type: type)
        }
    }
}

/// Byte-pair encoding as `tokenizers` runs it: scalars become symbols (falling back to
/// `<0xNN>` byte tokens, then to the unknown token), and adjacent pairs merge in rank order.
final class BPEModel: TokenizationModel {
    private let idsByToken: [[UInt8]: Int]
    private let tokensByID: [Int: String]
    /// Single-scalar tokens, the hot lookup when words are first split into symbols.
    private let idsBySingleScalar: [UInt32: Int]
    /// `<0xNN>` token ids, -1 where the vocabulary lacks one.
    private let byteTokenIDs: [Int]
    private let merges: [UInt64: MergeResult]
    private let unknownTokenID: Int?
    private let fusesUnknown: Bool
    private let fallsBackToBytes: Bool
    private let ignoresMerges: Bool
    private let continuingSubwordPrefix: Scalars?
    private let endOfWordSuffix: Scalars?
    private let cache = WordCache()

    struct MergeResult {
        let rank: Int32
        let newID: Int32
    }

    let vocabularyCount: Int

    init(_ cursor: JSONCursor) throws {
        var idsByToken: [[UInt8]: Int] = [:]
        var idsBySingleScalar: [UInt32: Int] = [:]
        // A dictionary, not an array, so an absurd id in a bad file cannot force a huge allocation.
        var tokensByID: [Int: String] = [:]
        let vocabularyEntries = try cursor.required("vocab").entries()
        idsByToken.reserveCapacity(vocabularyEntries.count)
        for (token, idCursor) in vocabularyEntries {
            let id = try idCursor.int()
            guard id >= 0, id <= Int(Int32.max) else { throw idCursor.invalid("token ids must be between 0 and \(Int32.max)") }
            idsByToken[Array(token.utf8)] = id
            let scalars = Scalars(token)
            if scalars.count == 1, let scalar = scalars.first { idsBySingleScalar[scalar.value] = id }
            if tokensByID[id] == nil { tokensByID[id] = token }
        }
        self.idsByToken = idsByToken
        self.tokensByID = tokensByID
        self.idsBySingleScalar = idsBySingleScalar
        self.vocabularyCount = idsByToken.count

        byteTokenIDs = (0..<256).map { byte in
            idsByToken[Array(Self.byteTokenName(UInt8(byte)).utf8)] ?? -1
        }

        var merges: [UInt64: MergeResult] = [:]
        let mergeCursors = try cursor.optional("merges")?.array() ?? []
        merges.reserveCapacity(mergeCursors.count)
        for (rank, mergeCursor) in mergeCursors.enumerated() {
            let (left, right) = try Self.mergePair(mergeCursor)
            guard let leftID = idsByToken[Array(left.utf8)] else {
                throw mergeCursor.invalid("merge token \(left.debugDescription) is not in the vocabulary")
            }
            guard let rightID = idsByToken[Array(right.utf8)] else {
                throw mergeCursor.invalid("merge token \(right.debugDescription) is not in the vocabulary")
            }
            guard let newID = idsByToken[Array(left.utf8) + Array(right.utf8)] else {
                throw mergeCursor.invalid("merged token \((left + right).debugDescription) is not in the vocabulary")
            }
            // A pair listed twice keeps its last rank, as a Rust HashMap built by collect() does.
            merges[Self.pairKey(leftID, rightID)] = MergeResult(rank: Int32(rank), newID: Int32(newID))
        }
        self.merges = merges

        if let unknownCursor = cursor.optional("unk_token") {
            let unknown = try unknownCursor.string()
            guard let id = idsByToken[Array(unknown.utf8)] else {
                throw unknownCursor.invalid("unknown token \(unknown.debugDescription) is not in the vocabulary")
            }
            unknownTokenID = id
        } else {
            unknownTokenID = nil
        }
        fusesUnknown = try cursor.bool("fuse_unk", default: false)
        fallsBackToBytes = try cursor.bool("byte_fallback", default: false)
        ignoresMerges = try cursor.bool("ignore_merges", default: false)
        continuingSubwordPrefix = try cursor.optional("continuing_subword_prefix").map { Scalars(try $0.string()) }
        endOfWordSuffix = try cursor.optional("end_of_word_suffix").map { Scalars(try $0.string()) }
    }

    /// A merge is `"left right"` (older files) or `["left", "right"]`.
    private static func mergePair(_ cursor: JSONCursor) throws -> (String, String) {
        switch cursor.value {
        case let .string(line):
            let parts = line.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw cursor.invalid("a merge string must be two tokens separated by one space, got \(line.debugDescription)")
            }
            return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self))
        case let .array(elements):
            guard elements.count == 2, case let .string(left) = elements[0], case let .string(right) = elements[1] else {
                throw cursor.invalid("a merge pair must be an array of two strings")
            }
            return (left, right)
        default:
            throw cursor.wrongType("a merge (\"a b\" or [\"a\", \"b\"])")
        }
    }

    /// `<0x0A>`: how SentencePiece byte tokens are spelled (uppercase hex, two digits).
    static func byteTokenName(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "<0x\(hex.count == 1 ? "0" + hex : hex)>"
    }

    private static func pairKey(_ left: Int, _ right: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: left)) << 32 | UInt64(UInt32(truncatingIfNeeded: right))
    }

    func tokenID(forBytes token: [UInt8]) -> Int? {
        idsByToken[token]
    }

    func token(forID id: Int) -> String? {
        tokensByID[id]
    }

    func tokenize(_ word: Scalars) -> [Int] {
        if word.isEmpty { return [] }
        if ignoresMerges, let whole = idsByToken[word.utf8Bytes] { return [whole] }
        if let cached = cache.lookup(word) { return cached }
        let ids = merge(initialSymbols(word))
        cache.store(word, ids)
        return ids
    }

    /// One symbol per scalar, or per byte where the scalar has no token of its own.
    private func initialSymbols(_ word: Scalars) -> [Int] {
        var symbols: [Int] = []
        symbols.reserveCapacity(word.count)
        var pendingUnknown = false
        let decorated = continuingSubwordPrefix != nil || endOfWordSuffix != nil
        for (position, scalar) in word.enumerated() {
            var piece: Scalars = [scalar]
            let id: Int?
            if decorated {
                if position > 0, let prefix = continuingSubwordPrefix { piece = prefix + piece }
                if position == word.count - 1, let suffix = endOfWordSuffix { piece += suffix }
                id = idsByToken[piece.utf8Bytes]
            } else {
                id = idsBySingleScalar[scalar.value]
            }
            if let id {
                if pendingUnknown, let unknownTokenID { symbols.append(unknownTokenID) }
                pendingUnknown = false
                symbols.append(id)
                continue
            }
            if fallsBackToBytes {
                let byteIDs = piece.utf8Bytes.map { byteTokenIDs[Int($0)] }
                if !byteIDs.contains(-1) {
                    // `tokenizers` leaves a pending unknown in place here and adds it later;
                    // keep that order.
                    symbols.append(contentsOf: byteIDs)
                    continue
                }
            }
            guard let unknownTokenID else { continue }
            if pendingUnknown, !fusesUnknown { symbols.append(unknownTokenID) }
            pendingUnknown = true
        }
        if pendingUnknown, let unknownTokenID { symbols.append(unknownTokenID) }
        return symbols
    }

    /// Applies merges lowest rank first (leftmost on ties) over a doubly linked list of symbols,
    /// with a binary heap of candidate pairs; stale heap entries are skipped when popped.
    private func merge(_ initial: [Int]) -> [Int] {
        let count = initial.count
        guard count > 1 else { return initial }
        var ids = initial
        var previous = Array(-1..<(count - 1))
        var next = Array(1...count)
        next[count - 1] = -1
        var alive = [Bool](repeating: true, count: count)
        var queue = MergeQueue()
        for position in 0..<(count - 1) {
            if let result = merges[Self.pairKey(ids[position], ids[position + 1])] {
                queue.push(rank: result.rank, position: Int32(position), newID: result.newID)
            }
        }
        while let top = queue.pop() {
            let position = Int(top.position)
            guard alive[position] else { continue }
            let right = next[position]
            guard right != -1 else { continue }
            // Skip entries whose pair has changed since they were queued.
            guard let current = merges[Self.pairKey(ids[position], ids[right])], current.newID == top.newID else {
                continue
            }
            ids[position] = Int(top.newID)
            alive[right] = false
            let afterRight = next[right]
            next[position] = afterRight
            if afterRight != -1 { previous[afterRight] = position }
            let left = previous[position]
            if left != -1, let result = merges[Self.pairKey(ids[left], ids[position])] {
                queue.push(rank: result.rank, position: Int32(left), newID: result.newID)
            }
            if afterRight != -1, let result = merges[Self.pairKey(ids[position], ids[afterRight])] {
                queue.push(rank: result.rank, position: Int32(position), newID: result.newID)
            }
        }
        var merged: [Int] = []
        merged.reserveCapacity(count)
        var position = 0
        while position != -1 {
            merged.append(ids[position])
            position = next[position]
        }
        return merged
    }
}

/// Min-heap of merge candidates ordered by (rank, position).
private struct MergeQueue {
    struct Entry {
        let rank: Int32
        let position: Int32
        let newID: Int32

        var order: UInt64 { UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: position)) }
    }

    private var heap: [Entry] = []

    mutating func push(rank: Int32, position: Int32, newID: Int32) {
        heap.append(Entry(rank: rank, position: position, newID: newID))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].order < heap[parent].order else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].order < heap[smallest].order { smallest = left }
                if right < heap.count, heap[right].order < heap[smallest].order { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return top
    }
}

/// Remembers the ids of short words; prompts repeat words a lot. Bounded, and thread-safe so
/// one `Tokenizer` can serve several threads.
private final class WordCache: @unchecked Sendable {
    /// Same limits as `tokenizers`: long words are rarely repeated, and the table must not grow
    /// without bound.
    private static let maximumWordLength = 256
    private static let capacity = 10_000

    private let lock = NSLock()
    private var idsByWord: [Scalars: [Int]] = [:]

    func lookup(_ word: Scalars) -> [Int]? {
        guard word.count < Self.maximumWordLength else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return idsByWord[word]
    }

    func store(_ word: Scalars, _ ids: [Int]) {
        guard word.count < Self.maximumWordLength else { return }
        lock.lock()
        defer { lock.unlock() }
        if idsByWord.count < Self.capacity { idsByWord[word] = ids }
    }
}
