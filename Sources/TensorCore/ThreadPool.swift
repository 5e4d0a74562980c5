import Dispatch
import Foundation

/// Splits loops over rows or heads across the cores.
///
/// Bodies must not call BLAS: OpenBLAS already uses every core for a product, and nesting the
/// two would put twice as many threads as cores to work.
public enum ThreadPool {
    /// Number of chunks a parallel loop is split into; one per core unless `PDROP_THREADS` says otherwise.
    public static let threadCount: Int = {
        if let text = ProcessInfo.processInfo.environment["PDROP_THREADS"], let value = Int(text), value > 0 {
            return value
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Runs `body` over contiguous sub-ranges of `0..<count`, in parallel when the work is big
    /// enough (`count` ≥ 2·`minimumPerThread`). `chunksPerThread` > 1 hands out smaller pieces
    /// as threads become free, so a core slowed by a neighbour does not hold up the rest.
    public static func parallelFor(
        _ count: Int, minimumPerThread: Int = 1, chunksPerThread: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        if count <= 0 { return }
        let chunks = min(threadCount * max(1, chunksPerThread), max(1, count / max(1, minimumPerThread)))
        if chunks == 1 {
            body(0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = count * chunk / chunks
            let end = count * (chunk + 1) / chunks
            if start < end { body(start..<end) }
        }
    }
}
