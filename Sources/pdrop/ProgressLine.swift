import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A progress bar on stderr for long work (training steps, benchmark questions): redrawn in
/// place on a terminal, one line per update otherwise (logs). Position, bar, the caller's
/// detail and the time left at the rate so far.
final class ProgressLine {
    let unit: String
    let total: Int
    /// Where this run started (a resumed run's earlier work is not in its rate).
    let first: Int
    let isTerminal = isatty(STDERR_FILENO) != 0

    init(unit: String, total: Int, first: Int) {
        self.unit = unit
        self.total = total
        self.first = first
    }

    /// `position` of `total` done, `seconds` spent on the `position - first` done in this run.
    func update(position: Int, seconds: Double, detail: String) {
        let done = position - first
        let remaining = done > 0 ? seconds / Double(done) * Double(total - position) : 0
        let width = 24, filled = width * position / max(total, 1)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = "\(unit) \(position)/\(total) [\(bar)] \(detail) ETA \(clockTime(remaining))"
        FileHandle.standardError.write(Data((isTerminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }

    func finishLine() {
        if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func clockTime(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
    }
}
