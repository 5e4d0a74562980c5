import FileAccess
import Foundation
import TensorCore
import Vision

/// The side of every generated image, in pixels: 14 × 14 patches of 8 px, i.e. 196 image tokens.
public let canvasSide = 112
/// The patch side the annotations count in, and how many patches make one row.
public let patchSize = 8
public let patchGridSide = canvasSide / patchSize

/// One question about an image: its type (the `category` of questions.jsonl, the `type` that
/// scoring reports per category), its text, its one-word answer, and the patches holding what it
/// is about.
public struct GeneratedQuestion: Equatable, Sendable {
    public let category: String
    public let text: String
    public let answer: String
    /// Indices `row * patchGridSide + column` of the patches the question's objects or cells
    /// cover, sorted; taken from the pixels actually drawn.
    public let patches: [Int]

    public init(category: String, text: String, answer: String, patches: [Int]) {
        self.category = category
        self.text = text
        self.answer = answer
        self.patches = patches
    }
}

/// One image with its questions, as the writer stores it.
public struct GeneratedImage: Sendable {
    /// The file name under `images/`, also the record's id without the extension.
    public let name: String
    public let image: RGBImage
    public let questions: [GeneratedQuestion]
    /// A request and its answer that describe the whole image (every object, or every cell, in
    /// a fixed order), asked first in the training record only: dense supervision that teaches
    /// the model to look up an object by its name, which a model trained from scratch otherwise
    /// finds slowly (its loss sits at the answers' prior for hundreds of steps). Never evaluated.
    public let description: (request: String, answer: String)?

    public init(name: String, image: RGBImage, questions: [GeneratedQuestion], description: (request: String, answer: String)? = nil) {
        self.name = name
        self.image = image
        self.questions = questions
        self.description = description
    }
}

/// The sorted patch indices that hold any of `pixels` (indices `y * canvasSide + x`).
public func patchIndices<Pixels: Sequence>(coveringPixels pixels: Pixels) -> [Int] where Pixels.Element == Int {
    Set(pixels.map { pixel in (pixel / canvasSide / patchSize) * patchGridSide + (pixel % canvasSide) / patchSize }).sorted()
}

/// `<task>-s<seed>-<index>`: the seed in the name keeps splits apart even in one folder.
func imageName(_ task: String, seed: UInt32, index: UInt32) -> String {
    let digits = String(index)
    return "\(task)-s\(seed)-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
}

// MARK: - Randomness

/// The generator of image `index` of a data set generated with `seed`.
///
/// Each image has its own stream, seeded with `seed << 32 | index`, passed through SplitMix64's
/// mixing once, so an image does not depend on how many draws the images before it took, and
/// two (seed, index) pairs never share a starting state: seeds and indices below 2^32 make the
/// packing one-to-one and the mixing is a bijection. A held-out split is therefore simply another
/// seed; its images can never repeat the training split's streams.
public func imageGenerator(seed: UInt32, index: UInt32) -> SplitMix64 {
    var mixer = SplitMix64(seed: UInt64(seed) << 32 | UInt64(index))
    return SplitMix64(seed: mixer.next())
}

extension SplitMix64 {
    /// A uniform integer in `0..<bound` by the multiply-high method, spelled out rather than
    /// Swift's `Int.random(in:using:)` so that the files stay the same whatever the standard
    /// library's algorithm (its bias, below 2^-50 for these bounds, does not matter here).
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "an empty range has no element to draw")
        return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    mutating func element<C: Collection>(of collection: C) -> C.Element where C.Index == Int {
        collection[collection.startIndex + below(collection.count)]
    }

    /// Fisher–Yates, drawn with `below`, for the same reason.
    mutating func shuffled<T>(_ items: [T]) -> [T] {
        var items = items
        for last in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(last, below(last + 1))
        }
        return items
    }
}

/// Picks `count` distinct questions from candidates grouped by type, cycling through the types
/// in a freshly shuffled order each round so every type is asked about as often as it can be.
/// Groups are in a fixed order, so the choice depends on the generator only.
func pickQuestions(from groups: [[GeneratedQuestion]], count: Int, using generator: inout SplitMix64) throws(TaskDataError) -> [GeneratedQuestion] {
    let available = groups.map(\.count).reduce(0, +)
    if count > available { throw .tooManyQuestions(requested: count, available: available) }
    var remaining = groups
    var picked: [GeneratedQuestion] = []
    while picked.count < count {
        for group in generator.shuffled(Array(remaining.indices)) where picked.count < count && !remaining[group].isEmpty {
            picked.append(remaining[group].remove(at: generator.below(remaining[group].count)))
        }
    }
    return picked
}

// MARK: - Writing

/// Writes `count` images made by `makeImage(index)` and their questions under `directory`:
///
/// - `images/<name>.png`;
/// - `train.json`: LLaVA conversation JSON, one multi-turn record per image, the first human
///   turn starting with `<image>\n`: the image's questions, then its description (when it has
///   one). Evaluation asks each question as the first turn, so training does too: a description
///   first would let later answers be copied from its text and teach the model to open with a
///   description;
/// - `questions.jsonl`: LLaVA's question jsonl (`question_id`, `image`, `text`, `category`), what
///   `pdrop eval run` reads. The text is the training turn's, without LLaVA's "Answer the
///   question using a single word or phrase." suffix: the task's answers are one word by
///   construction, and the model sees at test time exactly what it was trained on;
/// - `answers.json`: GQA's questions-JSON layout, an object keyed by question id with `answer`
///   and `type`, what `pdrop eval score --benchmark gqa` reads as questions or annotations;
/// - `patches.jsonl`: per question, the 8 px patches (of a 14 × 14 grid) its objects cover.
///
/// Question ids are `image index × questions per image + question number`. Every file is
/// written in index order with sorted keys, so one seed always gives the same bytes. Images are
/// written as they are made, so memory does not grow with `count`.
public func writeTaskDataset(count: Int, to directory: URL, makeImage: (Int) throws -> GeneratedImage) throws {
    let imagesDirectory = directory.appendingPathComponent("images")
    do {
        try FileManager.default.createDirectory(at: imagesDirectory, withIntermediateDirectories: true)
    } catch {
        throw TaskDataError.cannotWrite(file: imagesDirectory.path, reason: describeFoundationError(error))
    }
    struct Turn: Encodable { let from: String; let value: String }
    struct TrainingRecord: Encodable { let id: String; let image: String; let conversations: [Turn] }
    struct QuestionLine: Encodable {
        let questionId: Int; let image: String; let text: String; let category: String
        enum CodingKeys: String, CodingKey { case questionId = "question_id", image, text, category }
    }
    struct Answer: Encodable { let question: String; let answer: String; let type: String; let imageId: String }
    struct PatchLine: Encodable {
        let questionId: Int; let patchSize: Int; let grid: Int; let patches: [Int]
        enum CodingKeys: String, CodingKey { case questionId = "question_id", patchSize = "patch_size", grid, patches }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }

    var trainingRecords: [String] = [], questionLines: [String] = [], answers: [String] = [], patchLines: [String] = []
    var questionId = 0
    for index in 0..<count {
        let generated = try makeImage(index)
        let imageFile = generated.name + ".png"
        try PNGEncoder.write(generated.image, to: imagesDirectory.appendingPathComponent(imageFile))
        var turns: [Turn] = []
        for question in generated.questions {
            turns.append(Turn(from: "human", value: (turns.isEmpty ? "<image>\n" : "") + question.text))
            turns.append(Turn(from: "gpt", value: question.answer))
            questionLines.append(try json(QuestionLine(questionId: questionId, image: imageFile, text: question.text, category: question.category)))
            answers.append("\"\(questionId)\":" + (try json(Answer(question: question.text, answer: question.answer, type: question.category, imageId: generated.name))))
            patchLines.append(try json(PatchLine(questionId: questionId, patchSize: patchSize, grid: patchGridSide, patches: question.patches)))
            questionId += 1
        }
        // Last, so that every question is answered from the pixels as at test time (first turn,
        // no text to copy from) and the description adds every object's attributes to the loss.
        if let description = generated.description {
            turns.append(Turn(from: "human", value: (turns.isEmpty ? "<image>\n" : "") + description.request))
            turns.append(Turn(from: "gpt", value: description.answer))
        }
        trainingRecords.append(try json(TrainingRecord(id: generated.name, image: imageFile, conversations: turns)))
    }
    try writeDatasetFiles(trainingRecords: trainingRecords, questionLines: questionLines, answers: answers, patchLines: patchLines, to: directory)
}

// MARK: - Merging

/// Joins data sets written by `writeTaskDataset` (e.g. scenes and digit grids) into one under
/// `directory`, as if written at once: images copied into `images/` (their names carry task and
/// seed, so they never collide), training records and questions in source order, question ids
/// renumbered consecutively (the ids of the second source follow the first's). Returns the
/// number of images and questions.
public func mergeTaskDatasets(_ sources: [URL], into directory: URL) throws -> (images: Int, questions: Int) {
    let imagesDirectory = directory.appendingPathComponent("images")
    do {
        try FileManager.default.createDirectory(at: imagesDirectory, withIntermediateDirectories: true)
    } catch {
        throw TaskDataError.cannotWrite(file: imagesDirectory.path, reason: describeFoundationError(error))
    }
    func read(_ file: URL) throws -> Data {
        do { return try readFileData(file) } catch { throw TaskDataError.unreadableFile(file: file.path, reason: error.reason) }
    }
    func object(_ text: Substring, in file: URL, line: Int) throws -> [String: Any] {
        guard let value = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw TaskDataError.unreadableFile(file: file.path, reason: "line \(line) is not a JSON object")
        }
        return value
    }
    func text(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }
    var trainingRecords: [String] = [], questionLines: [String] = [], answers: [String] = [], patchLines: [String] = []
    var imageCount = 0, offset = 0
    for source in sources {
        let trainFile = source.appendingPathComponent("train.json")
        guard let records = try? JSONSerialization.jsonObject(with: try read(trainFile)) as? [Any] else {
            throw TaskDataError.unreadableFile(file: trainFile.path, reason: "not a JSON array of training records")
        }
        trainingRecords += try records.map(text)
        // questions.jsonl and patches.jsonl: one object a line; answers.json: one "id":{...} a line.
        var sourceQuestions = 0
        for (kind, name) in [("question", "questions.jsonl"), ("patch", "patches.jsonl")] {
            let file = source.appendingPathComponent(name)
            for (index, line) in String(decoding: try read(file), as: UTF8.self).split(separator: "\n").enumerated() {
                var value = try object(line, in: file, line: index + 1)
                guard let id = value["question_id"] as? Int else {
                    throw TaskDataError.unreadableFile(file: file.path, reason: "line \(index + 1) has no integer question_id")
                }
                value["question_id"] = id + offset
                if kind == "question" {
                    questionLines.append(try text(value))
                    sourceQuestions = max(sourceQuestions, id + 1)
                } else {
                    patchLines.append(try text(value))
                }
            }
        }
        let answersFile = source.appendingPathComponent("answers.json")
        guard let answerTable = try? JSONSerialization.jsonObject(with: try read(answersFile)) as? [String: Any] else {
            throw TaskDataError.unreadableFile(file: answersFile.path, reason: "not a JSON object keyed by question id")
        }
        for (key, value) in answerTable.compactMap({ key, value in Int(key).map { ($0, value) } }).sorted(by: { $0.0 < $1.0 }) {
            answers.append("\"\(key + offset)\":" + (try text(value)))
        }
        let sourceImages = source.appendingPathComponent("images")
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: sourceImages.path).sorted() } catch {
            throw TaskDataError.unreadableFile(file: sourceImages.path, reason: describeFoundationError(error))
        }
        for name in names {
            let destination = imagesDirectory.appendingPathComponent(name)
            do {
                try? FileManager.default.removeItem(at: destination)
                try FileManager.default.copyItem(at: sourceImages.appendingPathComponent(name), to: destination)
            } catch {
                throw TaskDataError.cannotWrite(file: destination.path, reason: describeFoundationError(error))
            }
        }
        imageCount += names.count
        offset += sourceQuestions
    }
    try writeDatasetFiles(trainingRecords: trainingRecords, questionLines: questionLines, answers: answers, patchLines: patchLines, to: directory)
    return (imageCount, offset)
}

/// The four files of a data set, one record per line (greppable, diffable): `trainingRecords`
/// as a JSON array, `answers` (`"id":{...}` entries) as an object, the others as JSON lines.
func writeDatasetFiles(trainingRecords: [String], questionLines: [String], answers: [String], patchLines: [String], to directory: URL) throws {
    let files = [
        ("train.json", "[\n" + trainingRecords.joined(separator: ",\n") + "\n]\n"),
        ("questions.jsonl", questionLines.map { $0 + "\n" }.joined()),
        ("answers.json", "{\n" + answers.joined(separator: ",\n") + "\n}\n"),
        ("patches.jsonl", patchLines.map { $0 + "\n" }.joined()),
    ]
    for (name, content) in files {
        let file = directory.appendingPathComponent(name)
        do { try Data(content.utf8).write(to: file) } catch { throw TaskDataError.cannotWrite(file: file.path, reason: describeFoundationError(error)) }
    }
}
