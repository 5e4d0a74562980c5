/// What can go wrong while generating a data set; each case names the file (and line) at fault.
public enum TaskDataError: Error, Equatable, CustomStringConvertible {
    case unreadableFile(file: String, reason: String)
    case notGzip(file: String, reason: String)
    /// A line of the MNIST CSV that is not 784 pixel values 0...255 and a label 0...9.
    case badDigitRow(file: String, line: Int, reason: String)
    /// The MNIST file lacks a digit the grids need (every digit 0...9 must appear at least once).
    case missingDigits(file: String, labels: [Int])
    case cannotWrite(file: String, reason: String)
    /// More questions per image asked for than an image of this task has.
    case tooManyQuestions(requested: Int, available: Int)
    /// An object size a scene cannot be drawn with (odd, under 8 px or too large for the canvas); nil: none given.
    case badObjectSize(size: Int?, largest: Int)
    /// No random placement of this many objects of these sizes fits the canvas with the gaps and margins a scene needs.
    case objectsDoNotFit(count: Int, sizes: [Int], canvas: Int)

    public var description: String {
        switch self {
        case let .unreadableFile(file, reason): return "\(file): cannot read: \(reason)"
        case let .notGzip(file, reason): return "\(file): not a readable gzip file: \(reason)"
        case let .badDigitRow(file, line, reason): return "\(file):\(line): not an MNIST row (784 pixels 0...255, then the label 0...9): \(reason)"
        case let .missingDigits(file, labels): return "\(file): no example of digit(s) \(labels.map(String.init).joined(separator: ", ")); the grids need all ten"
        case let .cannotWrite(file, reason): return "\(file): cannot write: \(reason)"
        case let .tooManyQuestions(requested, available): return "\(requested) questions per image asked for, but an image has only \(available) distinct questions"
        case let .badObjectSize(size?, largest): return "object size \(size) px: sizes must be even, from 8 to \(largest) px"
        case .badObjectSize(nil, _): return "no object sizes given"
        case let .objectsDoNotFit(count, sizes, canvas):
            return "\(count) objects of sizes \(sizes.map(String.init).joined(separator: ", ")) px do not fit a \(canvas) × \(canvas) canvas with clear gaps and neighbours (tried \(Scene.attemptsPerScene) scenes); use fewer or smaller objects"
        }
    }
}
