import Engine
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Models
import TensorCore
import TokenReduction

/// What a request asks the scheduler to generate.
public struct GenerationJob: Sendable {
    public var input: PromptInput
    public var reduction: ReductionRequest
    public var parameters: GenerationParameters

    public init(input: PromptInput, reduction: ReductionRequest, parameters: GenerationParameters) {
        self.input = input
        self.reduction = reduction
        self.parameters = parameters
    }
}

/// What the prefill of a job did: its sizes, the reduction and what it kept, its cost.
public struct PrefillReport: Sendable, Equatable {
    public let promptTokens: Int
    public let imageTokens: Int
    /// `describe(reducer)`: the reduction the request ran with.
    public let reduction: String
    /// Image tokens kept after each drop, summed over the prompt's images.
    public let keptImageTokensPerDrop: [Int]
    /// Wall seconds of the vision tower, and of the language model's prefill (first token included).
    public let visionSeconds: Double
    public let prefillSeconds: Double
    /// The prefill's FLOPs (vision tower, language model, output head, ranking), and what the
    /// reduction saved of the same prompt's FLOPs without it.
    public let prefillFLOPs: Double
    public let prefillFLOPsSaved: Double
}

/// What a job reports, in this order: `prefilled` once, then `text` as it becomes final, then
/// `finished` with the whole result; or `failed` at any point (a request the engine refuses,
/// such as an unreadable image or a prompt longer than the context, fails before `prefilled`).
/// The stream ends after `finished` or `failed`.
public enum JobEvent: Sendable {
    case prefilled(PrefillReport)
    case text(String)
    case finished(GenerationResult)
    case failed(any Error)
}

/// Where a job is, for observers (metrics, tests that cancel at a chosen moment).
public enum JobPhase: String, Sendable {
    case queued, preparing, prefilling, decoding, finished
}

/// A submitted job: its events, and a way to stop it wherever it is.
public final class JobHandle: Sendable {
    public let id: Int
    public let events: AsyncStream<JobEvent>
    let continuation: AsyncStream<JobEvent>.Continuation
    let cancellation = CancellationFlag()
    private let wake: @Sendable () -> Void

    init(id: Int, wake: @escaping @Sendable () -> Void) {
        self.id = id
        (events, continuation) = AsyncStream.makeStream(of: JobEvent.self)
        self.wake = wake
    }

    /// Stops the job: a queued job leaves the queue, a job in prefill stops when the prefill's
    /// current stage ends (the vision tower, the language model), a decoding one before its next
    /// token; its slot and cache are freed and its stream ends with `finished` (stop reason
    /// `cancelled`) or `failed`.
    public func cancel() {
        cancellation.cancel()
        wake()
    }

    public var isCancelled: Bool { cancellation.isCancelled }
}

/// Errors of submitting a job.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    case queueFull(capacity: Int)
    case shuttingDown

    public var description: String {
        switch self {
        case let .queueFull(capacity): return "the server is busy: \(capacity) requests are already waiting; retry later"
        case .shuttingDown: return "the server is shutting down"
        }
    }
}

/// Runs jobs on one worker thread with continuous batching, as llama.cpp's server slots and
/// vLLM's scheduler do: up to `slots` requests decode together, each decode step one batched
/// pass in which every weight is read once for all of them (`LanguageDecoder.decodeStep(_:)`),
/// each request attending over its own pyramid cache of its own lengths; prefills (the vision
/// tower and the language model over the prompt) run one at a time between decode steps; jobs
/// beyond the free slots wait in a queue of at most `maxQueue`, and a job beyond that is refused.
/// Each request's tokens are exactly what `InferenceSession.generate` gives it alone.
public final class DecodeScheduler: @unchecked Sendable {
    public let session: InferenceSession
    public let slots: Int
    public let maxQueue: Int
    /// Sees each phase change of every job (on the worker thread, or the submitter's for `queued`).
    private let observer: (@Sendable (JobHandle, JobPhase) -> Void)?
    private let metrics: ServerMetrics?

    private let condition = NSCondition()
    /// How long the worker waits idle before returning freed memory to the system.
    static let idleBeforeRelease: TimeInterval = 1
    // Guarded by `condition`.
    private var queue: [(handle: JobHandle, job: GenerationJob)] = []
    private var decodingCount = 0
    private var stopping = false
    private var nextId = 0
    private var worker: Thread?
    private var workerFinished = false

    /// A request being decoded: worker thread only.
    private struct ActiveSequence {
        let handle: JobHandle
        var generation: SequenceGeneration
        let cache: KVCache
        let prefill: PrefillResult
        let decodeStart: ContinuousClock.Instant
    }
    private var active: [ActiveSequence] = []
    private let clock = ContinuousClock()

    public init(
        session: InferenceSession, slots: Int, maxQueue: Int, metrics: ServerMetrics? = nil,
        observer: (@Sendable (JobHandle, JobPhase) -> Void)? = nil
    ) {
        precondition(slots >= 1 && maxQueue >= 0, "slots ≥ 1 and a queue ≥ 0")
        self.session = session
        self.slots = slots
        self.maxQueue = maxQueue
        self.metrics = metrics
        self.observer = observer
        let thread = Thread { [unowned self] in self.run() }
        thread.name = "pdrop-decode"
        thread.stackSize = 8 << 20
        worker = thread
        thread.start()
    }

    deinit { shutdown() }

    /// Queues `job`; its events arrive on the handle. Throws `queueFull` when `maxQueue` jobs
    /// already wait (every slot busy).
    public func submit(_ job: GenerationJob) throws(SchedulerError) -> JobHandle {
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw .shuttingDown }
        // Jobs the free slots will not take at once wait; with this one, at most `maxQueue`.
        let waitingWithThis = max(0, queue.count + 1 - (slots - decodingCount))
        if waitingWithThis > maxQueue {
            metrics?.rejected()
            throw .queueFull(capacity: maxQueue)
        }
        nextId += 1
        let handle = JobHandle(id: nextId) { [weak self] in self?.wake() }
        queue.append((handle, job))
        metrics?.queueDepth(queue.count)
        observer?(handle, .queued)
        condition.signal()
        return handle
    }

    /// Jobs waiting for a slot, and jobs decoding.
    public var load: (queued: Int, decoding: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (queue.count, decodingCount)
    }

    /// Cancels every job and stops the worker thread (waits for it).
    public func shutdown() {
        condition.lock()
        stopping = true
        let waiting = queue
        queue.removeAll()
        condition.broadcast()
        condition.unlock()
        for (handle, _) in waiting { handle.cancel() }
        for (handle, _) in waiting {
            handle.continuation.yield(.failed(SchedulerError.shuttingDown))
            handle.continuation.finish()
        }
        condition.lock()
        while worker != nil && !workerFinished && Thread.current !== worker { condition.wait() }
        condition.unlock()
    }

    private func wake() {
        condition.lock()
        condition.signal()
        condition.unlock()
    }

    // MARK: - The worker

    private func run() {
        var memoryReleased = true  // since the last work
        while true {
            condition.lock()
            while !stopping && active.isEmpty && (queue.isEmpty || decodingCount >= slots) && !queue.contains(where: { $0.handle.isCancelled }) {
                if memoryReleased {
                    condition.wait()
                } else if !condition.wait(until: Date(timeIntervalSinceNow: Self.idleBeforeRelease)) && active.isEmpty && queue.isEmpty {
                    // Idle a while: hand the freed caches and activations back to the system
                    // (glibc keeps freed memory in its arenas), so an idle server returns to its
                    // idle size. Not at once: a client's next request would fault them in again.
                    condition.unlock()
                    releaseFreedMemory()
                    condition.lock()
                    memoryReleased = true
                }
            }
            memoryReleased = false
            if stopping {
                condition.unlock()
                for sequence in active { sequence.handle.cancel() }
                cancelCancelledSequences()
                condition.lock()
                workerFinished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            // A cancelled job leaves the queue at once, whether or not a slot is free.
            let cancelled = queue.filter { $0.handle.isCancelled }
            queue.removeAll { $0.handle.isCancelled }
            let admitted = decodingCount < slots && !queue.isEmpty ? queue.removeFirst() : nil
            if admitted != nil { decodingCount += 1 }
            metrics?.queueDepth(queue.count)
            condition.unlock()

            for (handle, _) in cancelled { endBeforePrefill(handle, admitted: false) }
            if let (handle, job) = admitted { admit(handle, job) }
            if !active.isEmpty { decodeOnce() }
        }
    }

    /// A job cancelled before its prefill (in the queue, or as it was admitted).
    private func endBeforePrefill(_ handle: JobHandle, admitted: Bool) {
        var result = GenerationResult(promptTokens: 0)
        result.stopReason = .cancelled
        metrics?.finished(result)  // counted before the client hears, so its next /metrics read sees it
        handle.continuation.yield(.finished(result))
        handle.continuation.finish()
        if admitted { release(handle) } else { observer?(handle, .finished) }
    }

    /// Frees the slot of an admitted job.
    private func release(_ handle: JobHandle) {
        condition.lock()
        decodingCount -= 1
        condition.unlock()
        observer?(handle, .finished)
    }

    private func fail(_ handle: JobHandle, _ error: any Error) {
        metrics?.failed()
        handle.continuation.yield(.failed(error))
        handle.continuation.finish()
        release(handle)
    }

    /// Prepares the prompt (tokens, vision tower), runs the prefill and the first token; a job
    /// that wants more joins the decode batch.
    private func admit(_ handle: JobHandle, _ job: GenerationJob) {
        observer?(handle, .preparing)
        if handle.isCancelled { return endBeforePrefill(handle, admitted: true) }
        do {
            let decoder = session.decoder
            let prompt = try session.prepare(job.input)
            let reducer = try session.reducer(job.reduction, for: prompt)
            var generation = try SequenceGeneration(
                parameters: job.parameters, promptLength: prompt.inputIds.count, decoder: decoder, tokenizer: session.tokenizer)
            observer?(handle, .prefilling)
            if handle.isCancelled { return endBeforePrefill(handle, admitted: true) }
            let cache = decoder.makeCache(capacity: prompt.inputIds.count + generation.tokenLimit)
            let start = clock.now
            let prefill = decoder.prefill(
                embeddings: try session.embeddings(prompt), imageBlocks: prompt.imageBlocks, reducer: reducer, cache: cache,
                positions: prompt.positions)
            let lastRow = prefill.hidden.size(0) - 1
            let logits = decoder.logits(prefill.hidden, rows: lastRow..<(lastRow + 1))  // (1, vocab)
            generation.result.record(prefill, seconds: (clock.now - start).inSeconds, lastPromptLogits: logits)
            let flops = session.flops(prompt, reducer: reducer).exactTotal
            let report = PrefillReport(
                promptTokens: prompt.inputIds.count, imageTokens: prompt.imageTokens, reduction: describe(reducer),
                keptImageTokensPerDrop: prefill.keptImageTokens.map { $0.reduce(0) { $0 + $1.count } },
                visionSeconds: prompt.visionSeconds, prefillSeconds: generation.result.prefillSeconds, prefillFLOPs: flops,
                prefillFLOPsSaved: session.flops(prompt, reducer: NoReduction()).exactTotal - flops)
            metrics?.prefilled(report)
            handle.continuation.yield(.prefilled(report))
            var sequence = ActiveSequence(handle: handle, generation: generation, cache: cache, prefill: prefill, decodeStart: clock.now)
            if sequence.generation.isFinished {
                finish(sequence)
                return
            }
            let wantsMore = try logits.withPointer { pointer in
                try sequence.generation.accept(
                    logits: UnsafeBufferPointer(start: pointer, count: logits.count), cancellation: handle.cancellation,
                    onEvent: emitter(handle))
            }
            if wantsMore {
                observer?(handle, .decoding)
                active.append(sequence)
            } else {
                finish(sequence)
            }
        } catch {
            fail(handle, error)
        }
    }

    private func emitter(_ handle: JobHandle) -> (GenerationEvent) -> GenerationControl {
        { event in
            if !event.text.isEmpty { handle.continuation.yield(.text(event.text)) }
            return .continue
        }
    }

    private func finish(_ sequence: ActiveSequence) {
        var result = sequence.generation.result
        result.decodeSeconds = (clock.now - sequence.decodeStart).inSeconds
        result.keyValueCacheBytes = sequence.cache.usedBytes
        metrics?.finished(result)  // counted before the client hears, so its next /metrics read sees it
        sequence.handle.continuation.yield(.finished(result))
        sequence.handle.continuation.finish()
        release(sequence.handle)
    }

    /// Ends the sequences whose jobs were cancelled, before the next decode step.
    private func cancelCancelledSequences() {
        active.removeAll { sequence in
            guard sequence.handle.isCancelled else { return false }
            var ended = sequence
            ended.generation.cancel(onEvent: emitter(sequence.handle))
            finish(ended)
            return true
        }
    }

    /// One batched decode step of every active sequence.
    private func decodeOnce() {
        cancelCancelledSequences()
        guard !active.isEmpty else { return }
        let batch = active.map { sequence in
            DecodingSequence(
                token: sequence.generation.result.tokens.last!, cache: sequence.cache, prefill: sequence.prefill,
                step: sequence.generation.result.tokens.count - 1)
        }
        let logits: Tensor  // (sequences, vocab)
        do {
            logits = try session.decoder.decodeStep(batch)
        } catch {
            for sequence in active { fail(sequence.handle, error) }
            active.removeAll()
            return
        }
        let vocabulary = logits.size(1)
        var ended: [(index: Int, failed: Bool)] = []
        for index in active.indices {
            let handle = active[index].handle
            do {
                let wantsMore = try logits.withPointer { pointer in
                    try active[index].generation.accept(
                        logits: UnsafeBufferPointer(start: pointer + index * vocabulary, count: vocabulary),
                        cancellation: handle.cancellation, onEvent: emitter(handle))
                }
                if !wantsMore { ended.append((index, false)) }
            } catch {
                fail(handle, error)
                ended.append((index, true))
            }
        }
        for (index, failed) in ended.reversed() {
            let sequence = active.remove(at: index)
            if !failed { finish(sequence) }
        }
    }
}

/// Returns the allocator's free memory to the system where the C library can: glibc's
/// `malloc_trim(0)`, looked up at run time (Swift's Glibc module does not declare it).
private func releaseFreedMemory() {
    #if canImport(Glibc)
    typealias MallocTrim = @convention(c) (Int) -> Int32
    if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
    }
    #endif
}
