import Foundation

/// Stop strings over streamed text (OpenAI's `stop`): text that might be the start of a stop
/// string is held back until it is known not to be; the stop string itself is never emitted.
///
/// The emitted text is exactly the streamed text up to the earliest place where any stop string
/// occurs, however the text was cut into chunks: a complete match is only acted on once no
/// stop string can still match starting earlier. Matching compares Unicode scalars, as Python's
/// `str.find` in vLLM does, so chunks may split a multi-scalar grapheme (a flag, an emoji with
/// a skin tone, a letter and its combining accent) and still match; a stop string can also end
/// inside a grapheme of the text. Empty stop strings are ignored (they would match before any
/// text).
public struct StopStringMatcher {
    private let stopStrings: [[Unicode.Scalar]]
    /// Streamed text not emitted yet: it ends with the start of a possible match.
    private var heldBack: [Unicode.Scalar] = []
    /// Whether a stop string has matched; everything fed afterwards is dropped.
    public private(set) var stopped = false

    public init(stopStrings: [String]) {
        self.stopStrings = stopStrings.map { Array($0.unicodeScalars) }.filter { !$0.isEmpty }
    }

    /// Takes the next chunk and returns the text now known to come before any stop string, and
    /// whether a stop string matched (then generation should end; later feeds return "").
    public mutating func feed(_ text: String) -> (emit: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        heldBack.append(contentsOf: text.unicodeScalars)
        for start in heldBack.indices {
            switch match(at: start) {
            case .none:
                continue
            case .complete:
                stopped = true
                let emitted = Self.string(heldBack[..<start])
                heldBack.removeAll()
                return (emitted, true)
            case .possible:
                let emitted = Self.string(heldBack[..<start])
                heldBack.removeFirst(start)
                return (emitted, false)
            }
        }
        let emitted = Self.string(heldBack[...])
        heldBack.removeAll()
        return (emitted, false)
    }

    /// The text held back as a possible stop string start, now known not to be one (the stream
    /// ended); "" after a stop.
    public mutating func finish() -> String {
        let remaining = stopped ? "" : Self.string(heldBack[...])
        heldBack.removeAll()
        return remaining
    }

    private enum Match {
        /// No stop string starts at this position.
        case none
        /// A stop string occurs here in full.
        case complete
        /// The held text from here to its end is a proper prefix of a stop string.
        case possible
    }

    /// What the stop strings do at heldBack[start]. A complete match wins over a possible longer
    /// one at the same place: both would emit the same text.
    private func match(at start: Int) -> Match {
        let rest = heldBack[start...]
        var possible = false
        for stopString in stopStrings {
            if rest.starts(with: stopString) { return .complete }
            if stopString.starts(with: rest) { possible = true }
        }
        return possible ? .possible : .none
    }

    private static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        String(String.UnicodeScalarView(scalars))
    }
}
