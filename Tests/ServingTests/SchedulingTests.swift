import Engine
import Foundation
import Hummingbird
import HummingbirdTesting
import Models
import NIOCore
import Serving
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Every phase each job went through, and a way to hold a job at the start of its prefill.
final class PhaseLog: @unchecked Sendable {
    private let lock = NSLock()
    private var phases: [Int: [JobPhase]] = [:]
    private var decodingNow = 0
    private(set) var mostDecodingAtOnce = 0
    private var holding = false
    /// Jobs to hold at `.prefilling` until they are cancelled (at most 30 s).
    var holdAtPrefill: Bool {
        get { lock.withLock { holding } }
        set { lock.withLock { holding = newValue } }
    }

    func record(_ handle: JobHandle, _ phase: JobPhase) {
        let hold = lock.withLock { () -> Bool in
            phases[handle.id, default: []].append(phase)
            if phase == .decoding { decodingNow += 1; mostDecodingAtOnce = max(mostDecodingAtOnce, decodingNow) }
            if phase == .finished && phases[handle.id]?.contains(.decoding) == true { decodingNow -= 1 }
            return holding && phase == .prefilling
        }
        if hold {
            let deadline = Date().addingTimeInterval(30)
            while !handle.isCancelled && Date() < deadline { usleep(5_000) }
        }
    }

    func phases(of id: Int) -> [JobPhase] { lock.withLock { phases[id] ?? [] } }
    /// The id of the first job that reached `phase` and has not finished, if any.
    func job(in phase: JobPhase) -> Int? {
        lock.withLock { phases.filter { $0.value.last == phase }.keys.min() }
    }
    var jobCount: Int { lock.withLock { phases.count } }

    /// Waits (at most 60 s) until `condition` holds, without holding a thread of Swift
    /// concurrency's small pool (the server's handlers run there).
    func wait(_ what: String, until condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(60)
        while !condition() {
            if Date() > deadline { throw TimeoutError(what: what) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

struct TimeoutError: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs blocking `work` on a thread of its own: a test that blocked one of Swift concurrency's
/// threads (as many as cores) could starve the server it talks to when the suite runs in parallel.
func offThePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}

/// An HTTP/1.1 exchange over a socket on loopback that the test can hang up at any moment
/// (what a client that goes away does).
final class RawConnection: @unchecked Sendable {
    private let socketDescriptor: Int32

    init(port: Int) throws {
        socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if connected != 0 { throw TimeoutError(what: "a connection to port \(port) (errno \(errno))") }
    }

    func post(_ body: ByteBuffer) {
        let bytes = Array(body.readableBytesView)
        let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(bytes.count)\r\n\r\n"
        let message = Array(head.utf8) + bytes
        var sent = 0
        while sent < message.count {
            let count = message[sent...].withUnsafeBytes { send(socketDescriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return }
            sent += count
        }
    }

    /// What arrives within `seconds` (at most 64 KiB).
    func read(seconds: Double) async -> String {
        await offThePool { self.readBlocking(seconds: seconds) }
    }

    private func readBlocking(seconds: Double) -> String {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var descriptor = pollfd(fd: socketDescriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(seconds * 1000)) > 0 else { return "" }
        let count = recv(socketDescriptor, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }

    func close() { Glibc.close(socketDescriptor) }
}

/// The scheduler under concurrency: batched decoding equals decoding alone, cancellation from
/// a client that goes away (queued, in prefill, decoding) frees the slot, a full queue is refused.
@Suite(.serialized) struct SchedulingTests {
    let session: InferenceSession

    init() throws {
        session = try InferenceSession(directory: ServerFixture.directory)
    }

    @Test func batchedDecodingGivesEveryRequestItsOwnTokens() async throws {
        let log = PhaseLog()
        let scheduler = DecodeScheduler(session: session, slots: 4, maxQueue: 8, observer: { log.record($0, $1) })
        defer { scheduler.shutdown() }
        let image = ChatMessage.Part.image(.bytes(ServerFixture.imageData, name: "photo"))
        // Different prompt lengths, reductions (cache lengths and positions) and token counts.
        let cases: [(parts: [ChatMessage.Part], reduction: ReductionRequest, tokens: Int)] = [
            ([image, .text("What is in the picture?")], ReductionRequest(), 12),
            ([image, .text("Describe the colours of this photograph in a few words, please.")], .noReduction, 9),
            ([.text("Hello there, how are you today?")], ReductionRequest(), 14),
            ([image, .text("Where is the cat?")], .fastV(layer: 3, ratio: 0.75), 7),
            ([image, .text("Count the animals.")], .pyramidDrop(layers: [2, 4], ratios: [0.25, 0.1]), 11),
            ([image, .text("Is it day or night?")], .budget(128), 10),
        ]
        var handles: [JobHandle] = []
        for item in cases {
            handles.append(try scheduler.submit(GenerationJob(
                input: .messages([ChatMessage(role: .user, parts: item.parts)]), reduction: item.reduction,
                parameters: GenerationParameters(maxNewTokens: item.tokens, stopAtEndOfSequence: false))))
        }
        for (handle, item) in zip(handles, cases) {
            var result: GenerationResult?
            var streamed = ""
            for await event in handle.events {
                switch event {
                case let .finished(value): result = value
                case let .text(piece): streamed += piece
                case let .failed(error): Issue.record("job \(handle.id) failed: \(error)")
                case .prefilled: break
                }
            }
            let prompt = try session.prepare(.messages([ChatMessage(role: .user, parts: item.parts)]))
            let alone = try session.generate(
                prompt, reducer: try session.reducer(item.reduction, for: prompt),
                parameters: GenerationParameters(maxNewTokens: item.tokens, stopAtEndOfSequence: false))
            #expect(result?.tokens == alone.tokens, "job \(handle.id)")
            #expect(result?.text == alone.text && streamed == alone.text, "job \(handle.id)")
            #expect(result?.keptImageTokens == alone.keptImageTokens)
        }
        #expect(log.mostDecodingAtOnce >= 3, "requests did not decode together: at most \(log.mostDecodingAtOnce)")
        #expect(scheduler.load == (0, 0))
    }

    /// Qwen2-VL's 3-D positions through batched decoding: each request decodes from its own
    /// rope delta, as it would alone.
    @Test func batchedDecodingOfQwen2VLContinuesFromEachPromptsOwnPositions() async throws {
        let qwen = try InferenceSession(directory: Fixtures.url("tiny-qwen2-vl"))
        let scheduler = DecodeScheduler(session: qwen, slots: 3, maxQueue: 4, observer: { _, _ in })
        defer { scheduler.shutdown() }
        let image = ChatMessage.Part.image(.file(Fixtures.url("images/chelsea.jpg")))
        let cases: [(parts: [ChatMessage.Part], reduction: ReductionRequest)] = [
            ([image, .text("What is in the picture?")], ReductionRequest()),
            ([image, .text("Describe it.")], .noReduction),
            ([.text("Hello there")], .noReduction),
        ]
        var handles: [JobHandle] = []
        for item in cases {
            handles.append(try scheduler.submit(GenerationJob(
                input: .messages([ChatMessage(role: .user, parts: item.parts)]), reduction: item.reduction,
                parameters: GenerationParameters(maxNewTokens: 10, stopAtEndOfSequence: false))))
        }
        for (handle, item) in zip(handles, cases) {
            var result: GenerationResult?
            for await event in handle.events {
                if case let .finished(value) = event { result = value }
                if case let .failed(error) = event { Issue.record("job \(handle.id) failed: \(error)") }
            }
            let prompt = try qwen.prepare(.messages([ChatMessage(role: .user, parts: item.parts)]))
            let alone = try qwen.generate(
                prompt, reducer: try qwen.reducer(item.reduction, for: prompt),
                parameters: GenerationParameters(maxNewTokens: 10, stopAtEndOfSequence: false))
            #expect(result?.tokens == alone.tokens, "job \(handle.id)")
        }
    }

    /// A live server on loopback with one slot, and its phase log.
    func withLiveServer(maxQueue: Int = 4, _ body: @Sendable (_ port: Int, _ log: PhaseLog, _ model: ServedModel) async throws -> Void) async throws {
        let log = PhaseLog()
        let options = ServerFixture.options(parallel: 1, maxQueue: maxQueue)
        let model = try ServerFixture.served(options) { log.record($0, $1) }
        defer { model.shutdown() }
        let app = Application(
            router: makeRouter(model: model, options: options), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await body(try #require(client.port), log, model)
        }
    }

    static let longStream = ServerFixture.body(maxTokens: 3000, extra: ["stream": true])
    static let long = ServerFixture.body(maxTokens: 3000)

    func metric(_ name: String, _ model: ServedModel) -> Double {
        let line = model.metrics.exposition().split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Double($0.split(separator: " ")[1]) } ?? -1
    }

    @Test(arguments: [true, false])
    func aClientThatGoesAwayWhileDecodingFreesItsSlot(streaming: Bool) async throws {
        try await withLiveServer { port, log, model in
            let connection = try RawConnection(port: port)
            connection.post(streaming ? Self.longStream : Self.long)
            try await log.wait("a job decoding") { log.job(in: .decoding) != nil }
            let id = try #require(log.job(in: .decoding))
            if streaming {
                var received = ""
                for _ in 0..<120 where !received.contains("chat.completion.chunk") { received += await connection.read(seconds: 0.5) }
                #expect(received.hasPrefix("HTTP/1.1 200") && received.contains("chat.completion.chunk"), "\(received)")
            }
            connection.close()
            try await log.wait("the job to end") { log.phases(of: id).last == .finished }
            #expect(metric("pdrop_requests_cancelled_total", model) == 1)
            #expect(metric("pdrop_generated_tokens_total", model) < 3000)
            // The slot is free: the next request runs to its end.
            let next = try RawConnection(port: port)
            next.post(ServerFixture.body(maxTokens: 2))
            var answer = ""
            for _ in 0..<200 where !answer.contains("chat.completion\"") { answer += await next.read(seconds: 0.5) }
            next.close()
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.contains("\"completion_tokens\":2"), "\(answer)")
        }
    }

    @Test func aClientThatGoesAwayDuringPrefillOrWhileQueuedNeverDecodes() async throws {
        try await withLiveServer { port, log, model in
            // In prefill: the job is held where its prefill starts until the hang-up cancels it.
            log.holdAtPrefill = true
            let connection = try RawConnection(port: port)
            connection.post(Self.longStream)
            try await log.wait("a job in prefill") { log.job(in: .prefilling) != nil }
            let held = try #require(log.job(in: .prefilling))
            connection.close()
            try await log.wait("the held job to end") { log.phases(of: held).last == .finished }
            #expect(log.phases(of: held) == [.queued, .preparing, .prefilling, .finished])
            #expect(metric("pdrop_prompt_tokens_total", model) == 0)
            log.holdAtPrefill = false

            // Queued behind a long request in the only slot.
            let first = try RawConnection(port: port)
            first.post(Self.longStream)
            try await log.wait("the first job decoding") { log.job(in: .decoding) != nil }
            let queued = try RawConnection(port: port)
            queued.post(Self.long)
            try await log.wait("a queued job") { log.job(in: .queued) != nil }
            let waiting = try #require(log.job(in: .queued))
            queued.close()
            try await log.wait("the queued job to end") { log.phases(of: waiting).last == .finished }
            #expect(log.phases(of: waiting) == [.queued, .finished])
            first.close()
            try await log.wait("the first job to end") { log.job(in: .decoding) == nil }
            #expect(metric("pdrop_requests_cancelled_total", model) == 3)
        }
    }

    @Test func aFullQueueIsRefusedWith503() async throws {
        try await withLiveServer(maxQueue: 1) { port, log, model in
            let first = try RawConnection(port: port)
            first.post(Self.longStream)
            try await log.wait("the first job decoding") { log.job(in: .decoding) != nil }
            let second = try RawConnection(port: port)
            second.post(Self.long)
            try await log.wait("a queued job") { log.job(in: .queued) != nil }
            let third = try RawConnection(port: port)
            third.post(ServerFixture.body())
            var answer = ""
            for _ in 0..<120 where !answer.contains("}}") { answer += await third.read(seconds: 0.5) }
            #expect(answer.hasPrefix("HTTP/1.1 503") && answer.contains("\"code\":\"queue_full\""), "\(answer)")
            #expect(metric("pdrop_requests_rejected_total", model) == 1)
            for connection in [first, second, third] { connection.close() }
            try await log.wait("every job to end") { log.job(in: .decoding) == nil && log.job(in: .queued) == nil }
        }
    }
}
