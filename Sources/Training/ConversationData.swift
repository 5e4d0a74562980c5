import Engine
import FileAccess
import Foundation
import Models
import TensorCore
import Tokenizer
import Vision

// The training data of docs/TRAINING.md §1–3: LLaVA's conversation JSON, the Vicuna v1 template
// with its labels, the image-token expansion and the sample stream.

/// The label of a token the loss does not learn (PyTorch's `ignore_index`, LLaVA's `IGNORE_INDEX`).
public let ignoreLabel = -100

// MARK: - Errors

/// Why one record of the data file cannot become a training sample (TRAINING.md §1). `turn` is
/// the 0-based index into the record's `conversations`; `answer` the 0-based index of a gpt turn
/// among the gpt turns.
public enum BadRecordReason: Error, Equatable, Sendable, CustomStringConvertible {
    /// `found` names the JSON type ("an array", "a string", ...).
    case notAnObject(found: String)
    /// `found` names the JSON type, or is "an empty string".
    case imageNotAFileName(found: String)
    case missingConversations
    case conversationsNotAnArray(found: String)
    case emptyConversations
    case turnNotAnObject(turn: Int, found: String)
    /// `from` is absent, not a string, or neither "human" nor "gpt"; `found` is what was there.
    case unknownRole(turn: Int, found: String)
    case rolesOutOfOrder(turn: Int, found: String, expected: String)
    case valueNotAString(turn: Int, found: String)
    case noAnswer
    /// The `<image>` placeholders of the whole conversation: exactly 1 with an image, 0 without.
    case imagePlaceholderCount(count: Int, hasImage: Bool)
    case imagePlaceholderInAnswer(turn: Int)
    /// The record names an image but the dataset was loaded without an images directory.
    case imageWithoutImagesDirectory(image: String)
    /// The image path leaves the images directory once `..` and symbolic links are resolved
    /// (`../../etc/passwd`, an absolute path elsewhere, a link pointing out); the file is not opened.
    case imageOutsideImagesDirectory(image: String, imagesDirectory: String)
    case missingImageFile(path: String)
    case undecodableImage(ImageError)
    /// A prefix of the text (up to the `ASSISTANT:` or the `</s>` of answer `answer`) does not
    /// tokenize to a prefix of the whole text's ids, so its span cannot be located.
    case tokenizationMismatch(answer: Int, prefixEndsAfter: String)
    /// The ids hold `found` image-token ids where the text holds `expected` `<image>` (a
    /// tokenizer without `<image>` as an added token gives 0).
    case imageTokenCount(found: Int, expected: Int, imageTokenID: Int)
    /// `tokens` counts the expanded image tokens.
    case longerThanContext(tokens: Int, contextLength: Int)
    /// The tokenizer refused the text (`reason` says why, e.g. a regular expression's time limit).
    case untokenizable(String)

    public var description: String {
        switch self {
        case let .notAnObject(found): return "the record is \(found), not an object"
        case let .imageNotAFileName(found): return "\"image\" is \(found), not a file name"
        case .missingConversations: return "no \"conversations\""
        case let .conversationsNotAnArray(found): return "\"conversations\" is \(found), not an array"
        case .emptyConversations: return "\"conversations\" is empty"
        case let .turnNotAnObject(turn, found): return "conversations[\(turn)] is \(found), not an object"
        case let .unknownRole(turn, found): return "conversations[\(turn)].from is \(found), not \"human\" or \"gpt\""
        case let .rolesOutOfOrder(turn, found, expected):
            return "roles out of order: conversations[\(turn)] is from \"\(found)\", expected \"\(expected)\" (turns alternate human, gpt, ... starting with human)"
        case let .valueNotAString(turn, found): return "conversations[\(turn)].value is \(found), not a string"
        case .noAnswer: return "the conversation has no \"gpt\" turn to learn"
        case let .imagePlaceholderCount(count, hasImage):
            return hasImage
                ? "the record has an image but its conversation holds \(count) <image> placeholders (expected 1)"
                : "the record has no image but its conversation holds \(count) <image> placeholder\(count == 1 ? "" : "s")"
        case let .imagePlaceholderInAnswer(turn): return "conversations[\(turn)] is a gpt turn holding <image> (it must be in a human turn)"
        case let .imageWithoutImagesDirectory(image): return "the record has image \"\(image)\" but no images directory was given"
        case let .imageOutsideImagesDirectory(image, imagesDirectory):
            return "image \"\(image)\" lies outside the images directory \(imagesDirectory) (once '..' and symbolic links are resolved); it is not opened"
        case let .missingImageFile(path): return "image file \(path) does not exist"
        case let .undecodableImage(error): return "image does not decode: \(error)"
        case let .tokenizationMismatch(answer, prefixEndsAfter):
            return "tokenization mismatch: the text up to answer \(answer)'s \(prefixEndsAfter) does not tokenize to a prefix of the whole text's ids"
        case let .imageTokenCount(found, expected, imageTokenID):
            return "the ids hold \(found) image tokens (id \(imageTokenID)) where the text holds \(expected) <image> (is <image> an added token of the tokenizer?)"
        case let .longerThanContext(tokens, contextLength):
            return "\(tokens) tokens (image tokens expanded), longer than the model's context of \(contextLength)"
        case let .untokenizable(reason):
            return "the tokenizer cannot encode the text: \(reason)"
        }
    }
}

/// A record of the data file that is not trained on: where it is, its id, and why.
public struct BadRecord: Equatable, Sendable, CustomStringConvertible {
    /// 0-based position in the file's array.
    public let index: Int
    /// The record's id as text (`ConversationRecord.idText`), "?" when it has none.
    public let id: String
    public let reason: BadRecordReason

    public init(index: Int, id: String, reason: BadRecordReason) {
        self.index = index
        self.id = id
        self.reason = reason
    }

    public var description: String {
        "record \(index) (id \(id)): \(reason)"
    }
}

/// What loading does with bad records (`--bad-records`).
public enum BadRecordPolicy: String, Sendable, CaseIterable {
    /// List them and train on the rest.
    case skip
    /// Stop before training: loading throws `ConversationDataError.badRecords`.
    case refuse
}

/// Problems with the data file as a whole, each naming the file.
public enum ConversationDataError: Error, Equatable, CustomStringConvertible {
    case unreadableFile(file: String, reason: String)
    case notJSON(file: String, reason: String)
    case notAnArray(file: String, found: String)
    /// `--bad-records refuse` and the file holds bad records (all of them, in file order).
    case badRecords(file: String, records: [BadRecord], recordCount: Int)

    public var description: String {
        switch self {
        case let .unreadableFile(file, reason): return "\(file): cannot read the data file: \(reason)"
        case let .notJSON(file, reason): return "\(file): not a JSON file: \(reason)"
        case let .notAnArray(file, found): return "\(file): the data file holds \(found), not an array of records"
        case let .badRecords(file, records, recordCount):
            let lines = records.map { "  \($0)" }.joined(separator: "\n")
            return "\(file): \(records.count) of \(recordCount) records are bad (--bad-records refuse):\n\(lines)"
        }
    }
}

// MARK: - Records

/// A record whose structure has been checked: an object whose `conversations` alternate human
/// and gpt turns, starting with human, with at least one answer, and whose `image` (if any) is a
/// file name. The `<image>` placeholders and the image file are checked by `TrainingSample.make`.
public struct ConversationRecord: Equatable, Sendable {
    /// As `idText` gives it.
    public let id: String
    /// Relative to the images directory (or absolute), which it must not leave.
    public let image: String?
    public let turns: [ConversationTurn]

    public init(id: String, image: String?, turns: [ConversationTurn]) {
        self.id = id
        self.image = image
        self.turns = turns
    }

    /// The id of a record (as `JSONSerialization` gives it) as text: a string as it is, any other
    /// JSON value as JSON text (`12` → "12"), "?" for a record without one (as the reference).
    public static func idText(of json: Any) -> String {
        guard let object = json as? [String: Any], let id = object["id"] else { return "?" }
        switch id {
        case let text as String: return text
        case let flag as Bool: return flag ? "true" : "false"
        case let number as NSNumber:
            // Integers exactly; other numbers in Swift's shortest round-trip form ("2.5").
            let type = number.objCType.pointee
            return type == UInt8(ascii: "d") || type == UInt8(ascii: "f") ? "\(number.doubleValue)" : number.stringValue
        case is NSNull: return "null"
        default:
            guard let data = try? JSONSerialization.data(withJSONObject: id, options: [.sortedKeys]) else { return "?" }
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// Checks the structure of one record of the file, as `JSONSerialization` gives it, in the
    /// reference's order (conversations, then each turn's role, value and place, then an answer,
    /// then the image's name).
    public init(json: Any) throws(BadRecordReason) {
        guard let object = json as? [String: Any] else { throw .notAnObject(found: jsonTypeName(json)) }
        guard let conversationsValue = object["conversations"] else { throw .missingConversations }
        guard let conversations = conversationsValue as? [Any] else {
            throw .conversationsNotAnArray(found: jsonTypeName(conversationsValue))
        }
        if conversations.isEmpty { throw .emptyConversations }
        var turns: [ConversationTurn] = []
        turns.reserveCapacity(conversations.count)
        for (index, turnValue) in conversations.enumerated() {
            guard let turn = turnValue as? [String: Any] else { throw .turnNotAnObject(turn: index, found: jsonTypeName(turnValue)) }
            guard let fromValue = turn["from"] else { throw .unknownRole(turn: index, found: "absent") }
            guard let from = fromValue as? String else { throw .unknownRole(turn: index, found: jsonTypeName(fromValue)) }
            guard let role = ConversationTurn.Role(rawValue: from) else { throw .unknownRole(turn: index, found: "\"\(from)\"") }
            guard let valueValue = turn["value"] else { throw .valueNotAString(turn: index, found: "absent") }
            guard let value = valueValue as? String else { throw .valueNotAString(turn: index, found: jsonTypeName(valueValue)) }
            let expected: ConversationTurn.Role = index % 2 == 0 ? .human : .gpt
            if role != expected { throw .rolesOutOfOrder(turn: index, found: role.rawValue, expected: expected.rawValue) }
            turns.append(ConversationTurn(role: role, value: value))
        }
        if !turns.contains(where: { $0.role == .gpt }) { throw .noAnswer }
        var image: String?
        if let imageValue = object["image"] {
            guard let name = imageValue as? String else { throw .imageNotAFileName(found: jsonTypeName(imageValue)) }
            if name.isEmpty { throw .imageNotAFileName(found: "an empty string") }
            image = name
        }
        self.init(id: Self.idText(of: json), image: image, turns: turns)
    }

    /// Checks the `<image>` placeholders: exactly one, in a human turn, with an image; none without.
    public func checkImagePlaceholders() throws(BadRecordReason) {
        var placeholders = 0
        var firstInAnswer: Int?
        for (index, turn) in turns.enumerated() {
            let count = occurrences(of: ConversationTemplate.imagePlaceholder, in: turn.value)
            if count > 0 && turn.role == .gpt && firstInAnswer == nil { firstInAnswer = index }
            placeholders += count
        }
        if image != nil, let firstInAnswer { throw .imagePlaceholderInAnswer(turn: firstInAnswer) }
        if placeholders != (image == nil ? 0 : 1) { throw .imagePlaceholderCount(count: placeholders, hasImage: image != nil) }
    }
}

/// The JSON type of a value from `JSONSerialization`, for messages.
private func jsonTypeName(_ value: Any) -> String {
    switch value {
    case is String: return "a string"
    case is Bool: return "a boolean"
    case is NSNumber: return "a number"
    case is [Any]: return "an array"
    case is [String: Any]: return "an object"
    case is NSNull: return "null"
    default: return "\(type(of: value))"
    }
}

/// Non-overlapping occurrences of `needle` in `haystack`, counted over Unicode scalars as Python's
/// `str.count` does (Swift's Character view would miss a `<image>` followed by a combining mark).
private func occurrences(of needle: String, in haystack: String) -> Int {
    let pattern = Array(needle.unicodeScalars), text = Array(haystack.unicodeScalars)
    guard !pattern.isEmpty, text.count >= pattern.count else { return 0 }
    var count = 0, index = 0
    while index + pattern.count <= text.count {
        if text[index] == pattern[0] && text[index..<(index + pattern.count)].elementsEqual(pattern) {
            count += 1
            index += pattern.count
        } else {
            index += 1
        }
    }
    return count
}

// MARK: - Template and labels

extension ConversationTemplate {
    /// Ids of the conversation (with `<s>` first and one id per `<image>`) and their labels, as
    /// TRAINING.md §2 fixes them: each answer's tokens from its leading space through its `</s>`,
    /// `ignoreLabel` elsewhere. Spans are located by tokenizing the prefixes; one that is not a
    /// prefix of the ids is a tokenization mismatch.
    public func tokenizeWithLabels(_ turns: [ConversationTurn], tokenizer: Tokenizer) throws(BadRecordReason) -> (ids: [Int], labels: [Int]) {
        let (text, answerPrefixes) = render(turns)
        func encode(_ text: String) throws(BadRecordReason) -> [Int] {
            do { return try tokenizer.encode(text, addSpecialTokens: true) } catch { throw .untokenizable("\(error)") }
        }
        let ids = try encode(text)
        var labels = [Int](repeating: ignoreLabel, count: ids.count)
        func prefixLength(_ prefix: String, answer: Int, endsAfter: String) throws(BadRecordReason) -> Int {
            let prefixIds = try encode(prefix)
            guard prefixIds.count <= ids.count, ids[..<prefixIds.count].elementsEqual(prefixIds) else {
                throw .tokenizationMismatch(answer: answer, prefixEndsAfter: endsAfter)
            }
            return prefixIds.count
        }
        for (answer, prefixes) in answerPrefixes.enumerated() {
            let start = try prefixLength(prefixes.start, answer: answer, endsAfter: "\"ASSISTANT:\"")
            let end = try prefixLength(prefixes.end, answer: answer, endsAfter: "\"</s>\"")
            for index in start..<max(start, end) { labels[index] = ids[index] }
        }
        return (ids, labels)
    }
}

// MARK: - Samples

/// Image tokens an image of (height, width) pixels becomes, for models where it varies
/// (LLaVA-NeXT's anyres block): e.g. `InferenceSession.imageTokenCount`.
public typealias ImageTokenCount = @Sendable (_ height: Int, _ width: Int) -> Int

/// Positions i whose label is ignored while the next one is not: the last token before each
/// answer span, PyramidDrop's query rows in training (also after drops, on gathered labels).
public func answerQueryRows(labels: [Int]) -> [Int] {
    labels.indices.dropLast().filter { labels[$0] == ignoreLabel && labels[$0 + 1] != ignoreLabel }
}

/// One record ready for the model: ids with the image tokens expanded, labels, and its image.
public struct TrainingSample: Equatable, Sendable {
    public let id: String
    /// (T) token ids; the image block holds `tokensPerImage` copies of the image-token id.
    public let inputIds: [Int]
    /// (T) `inputIds[i]` where token i is learned, `ignoreLabel` elsewhere.
    public let labels: [Int]
    public let imageFile: URL?
    /// Rows of the image tokens in `inputIds`; nil for a text-only sample.
    public let imageBlock: Range<Int>?

    public init(id: String, inputIds: [Int], labels: [Int], imageFile: URL?, imageBlock: Range<Int>?) {
        precondition(inputIds.count == labels.count, "inputIds (\(inputIds.count)) and labels (\(labels.count)) differ in length")
        self.id = id
        self.inputIds = inputIds
        self.labels = labels
        self.imageFile = imageFile
        self.imageBlock = imageBlock
    }

    public var length: Int { inputIds.count }

    /// Rows whose next token starts an answer span (the `:` of each `ASSISTANT:`, one per
    /// answer): PyramidDrop's query rows in training (TRAINING.md §4).
    public var queryRows: [Int] { answerQueryRows(labels: labels) }

    /// The sample of a structurally checked record, with the remaining checks of TRAINING.md §1
    /// in the reference's order: the image file (exists, decodes), the `<image>` placeholders,
    /// the template and labels (tokenization mismatch), the image token, the context length.
    public static func make(
        record: ConversationRecord, imagesDirectory: URL?, tokenizer: Tokenizer, imageTokenID: Int, tokensPerImage: Int,
        contextLength: Int, template: ConversationTemplate = .vicunaV1, checksImages: Bool = true, imageTokenCount: ImageTokenCount? = nil
    ) throws(BadRecordReason) -> TrainingSample {
        var imageFile: URL?
        var imageTokens = tokensPerImage
        if let image = record.image {
            guard let imagesDirectory else { throw .imageWithoutImagesDirectory(image: image) }
            let file = try checkedImageFile(image, in: imagesDirectory)
            if checksImages || imageTokenCount != nil {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: file.path, isDirectory: &isDirectory), !isDirectory.boolValue else {
                    throw .missingImageFile(path: file.path)
                }
                do {
                    let decoded = try ImageDecoder.decode(contentsOf: file)
                    if let imageTokenCount { imageTokens = imageTokenCount(decoded.height, decoded.width) }
                } catch {
                    throw .undecodableImage(error)
                }
            }
            imageFile = file
        }
        try record.checkImagePlaceholders()
        let (ids, labels) = try template.tokenizeWithLabels(record.turns, tokenizer: tokenizer)
        let expectedImageTokens = record.image == nil ? 0 : 1
        let foundImageTokens = ids.lazy.filter { $0 == imageTokenID }.count
        if foundImageTokens != expectedImageTokens {
            throw .imageTokenCount(found: foundImageTokens, expected: expectedImageTokens, imageTokenID: imageTokenID)
        }
        let expanded = expandImageTokens(
            ids: ids, labels: labels, imageTokenId: imageTokenID, counts: record.image == nil ? [] : [imageTokens], ignoredLabel: ignoreLabel)
        if expanded.ids.count > contextLength { throw .longerThanContext(tokens: expanded.ids.count, contextLength: contextLength) }
        return TrainingSample(
            id: record.id, inputIds: expanded.ids, labels: expanded.labels ?? labels, imageFile: imageFile, imageBlock: expanded.blocks.first)
    }
}

/// The file of a record's `image`: joined to the images directory as os.path.join does (an
/// absolute path stands alone), and refused unless it lies inside the directory once `..` and
/// symbolic links are resolved (by realpath where the file exists, by its `..` otherwise).
func checkedImageFile(_ image: String, in imagesDirectory: URL) throws(BadRecordReason) -> URL {
    let file = image.hasPrefix("/") ? URL(fileURLWithPath: image) : imagesDirectory.appendingPathComponent(image)
    let root = resolvedPath(imagesDirectory.path)
    guard resolvedPath(file.path).hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
        throw .imageOutsideImagesDirectory(image: image, imagesDirectory: imagesDirectory.path)
    }
    return file
}

/// `path` with symbolic links and `..` resolved (realpath) where it exists, its `..` removed otherwise.
private func resolvedPath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return URL(fileURLWithPath: path).standardized.path }
    defer { free(resolved) }
    return String(cString: resolved)
}

// MARK: - Dataset

/// The samples of a data file and the records that could not become samples.
public struct TrainingDataset: Sendable {
    public let dataFile: URL
    /// Records in the file, good and bad.
    public let recordCount: Int
    /// In file order.
    public let samples: [TrainingSample]
    /// In file order.
    public let badRecords: [BadRecord]

    /// Reads a LLaVA conversation file (TRAINING.md §1–2). Each record is checked on its own;
    /// with `.skip` the bad ones are returned in `badRecords`, with `.refuse` any bad record
    /// throws `ConversationDataError.badRecords` listing all of them. `contextLength` is the
    /// language model's `max_position_embeddings`; `imageTokenID` the LLaVA config's
    /// `image_token_index`. `checksImages: false` skips opening the image files (existence and
    /// decoding), for tools that only need the token ids. `template` renders the turns (LLaVA
    /// trains with `vicunaV1`; a model meant for llava-hf's prompt trains with `llava15`).
    public static func load(
        dataFile: URL, imagesDirectory: URL?, tokenizer: Tokenizer, imageTokenID: Int, tokensPerImage: Int, contextLength: Int,
        template: ConversationTemplate = .vicunaV1, badRecords policy: BadRecordPolicy = .skip, checksImages: Bool = true,
        imageTokenCount: ImageTokenCount? = nil
    ) throws(ConversationDataError) -> TrainingDataset {
        let file = dataFile.path
        let data: Data
        switch readWholeFile(atPath: file) {
        case .success(let bytes): data = Data(bytes)
        case .failure(let error): throw .unreadableFile(file: file, reason: error.reason)
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw .notJSON(file: file, reason: describeFoundationError(error))
        }
        guard let records = json as? [Any] else { throw .notAnArray(file: file, found: jsonTypeName(json)) }

        // Records are independent and the tokenizer is thread-safe; image decoding dominates.
        var outcomes = [Result<TrainingSample, BadRecord>?](repeating: nil, count: records.count)
        outcomes.withUnsafeMutableBufferPointer { results in
            ThreadPool.parallelFor(records.count, minimumPerThread: 16, chunksPerThread: 8) { range in
                for index in range {
                    let record = records[index]
                    do throws(BadRecordReason) {
                        let checked = try ConversationRecord(json: record)
                        let sample = try TrainingSample.make(
                            record: checked, imagesDirectory: imagesDirectory, tokenizer: tokenizer, imageTokenID: imageTokenID,
                            tokensPerImage: tokensPerImage, contextLength: contextLength, template: template, checksImages: checksImages,
                            imageTokenCount: imageTokenCount)
                        results[index] = .success(sample)
                    } catch {
                        results[index] = .failure(BadRecord(index: index, id: ConversationRecord.idText(of: record), reason: error))
                    }
                }
            }
        }
        var samples: [TrainingSample] = [], bad: [BadRecord] = []
        for outcome in outcomes {
            switch outcome! {
            case .success(let sample): samples.append(sample)
            case .failure(let record): bad.append(record)
            }
        }
        if policy == .refuse && !bad.isEmpty { throw .badRecords(file: file, records: bad, recordCount: records.count) }
        return TrainingDataset(dataFile: dataFile, recordCount: records.count, samples: samples, badRecords: bad)
    }
}

extension BadRecord: Error {}

// MARK: - Stream

/// Where a `SampleStream` stands: `index` samples of epoch `epoch`'s order have been taken.
public struct SampleStreamPosition: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var epoch: Int
    public var index: Int

    public init(epoch: Int, index: Int) {
        self.epoch = epoch
        self.index = index
    }

    public static let start = SampleStreamPosition(epoch: 0, index: 0)

    public var description: String { "epoch \(epoch), sample \(index)" }
}

public enum SampleStreamError: Error, Equatable, CustomStringConvertible {
    case noSamples
    case positionOutOfRange(SampleStreamPosition, samplesPerEpoch: Int)

    public var description: String {
        switch self {
        case .noSamples: return "there are no samples to train on"
        case let .positionOutOfRange(position, samplesPerEpoch):
            return "stream position \(position) is outside an epoch of \(samplesPerEpoch) samples (epoch ≥ 0, 0 ≤ sample < \(samplesPerEpoch))"
        }
    }
}

/// The samples as training takes them (TRAINING.md §3): epoch after epoch, in file order or
/// shuffled per epoch, `next(B)` giving the next B and wrapping into the next epoch. Setting the
/// position (from a checkpoint's trainer state) continues exactly where a run stopped.
public struct SampleStream: Sendable {
    public let samples: [TrainingSample]
    /// nil: file order every epoch.
    public let shuffleSeed: UInt64?
    public private(set) var position: SampleStreamPosition
    /// (samples.count) sample indices in the order of `position.epoch`.
    private var order: [Int]

    public init(samples: [TrainingSample], shuffleSeed: UInt64? = nil, position: SampleStreamPosition = .start) throws(SampleStreamError) {
        if samples.isEmpty { throw .noSamples }
        self.samples = samples
        self.shuffleSeed = shuffleSeed
        self.position = .start
        order = Self.order(epoch: 0, sampleCount: samples.count, shuffleSeed: shuffleSeed)
        try seek(to: position)
    }

    public var samplesPerEpoch: Int { samples.count }

    /// Moves to `position`, as saved from `position` of an earlier run with the same samples and seed.
    public mutating func seek(to position: SampleStreamPosition) throws(SampleStreamError) {
        guard position.epoch >= 0, position.index >= 0, position.index < samples.count else {
            throw .positionOutOfRange(position, samplesPerEpoch: samples.count)
        }
        if position.epoch != self.position.epoch {
            order = Self.order(epoch: position.epoch, sampleCount: samples.count, shuffleSeed: shuffleSeed)
        }
        self.position = position
    }

    /// The next `batchSize` samples, continuing into the next epoch (and its order) when this one runs out.
    public mutating func next(_ batchSize: Int) -> [TrainingSample] {
        precondition(batchSize > 0, "batch size must be positive, got \(batchSize)")
        var batch: [TrainingSample] = []
        batch.reserveCapacity(batchSize)
        while batch.count < batchSize {
            batch.append(samples[order[position.index]])
            position.index += 1
            if position.index == samples.count {
                position = SampleStreamPosition(epoch: position.epoch + 1, index: 0)
                order = Self.order(epoch: position.epoch, sampleCount: samples.count, shuffleSeed: shuffleSeed)
            }
        }
        return batch
    }

    /// Sample indices of epoch `epoch`. Without a seed, `0..<sampleCount`. With one, a
    /// Fisher–Yates shuffle driven by `SplitMix64(seed: seed &+ epoch &* 0xD1B54A32D192ED03)`:
    /// for i from sampleCount-1 down to 1, j = high 64 bits of `next() * (i + 1)` (Lemire's
    /// multiply-shift, so j is in 0...i), then swap i and j. Each epoch's order depends only on
    /// the seed and the epoch, so resuming needs nothing but the position.
    public static func order(epoch: Int, sampleCount: Int, shuffleSeed: UInt64?) -> [Int] {
        var order = Array(0..<sampleCount)
        guard let shuffleSeed, sampleCount > 1 else { return order }
        var generator = SplitMix64(seed: shuffleSeed &+ UInt64(epoch) &* 0xD1B5_4A32_D192_ED03)
        for i in stride(from: sampleCount - 1, through: 1, by: -1) {
            let j = Int(generator.next().multipliedFullWidth(by: UInt64(i + 1)).high)
            order.swapAt(i, j)
        }
        return order
    }
}

// MARK: - Batches
