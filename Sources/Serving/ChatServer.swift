import Engine
import Foundation
import Hummingbird
import Models
import NIOCore
import TokenReduction
import Vision

/// How `pdrop serve` runs: what it accepts, its limits and its defaults.
public struct ServerOptions: Sendable {
    /// The name `/v1/models` lists (default: the checkpoint directory's name).
    public var modelName: String
    /// The reduction of a request that names none.
    public var defaultReduction: ReductionRequest
    /// Requests that decode together; requests beyond wait in a queue of `maxQueue`.
    public var parallel: Int
    public var maxQueue: Int
    /// Required as `Authorization: Bearer <key>` on every endpoint but /health when set.
    public var apiKey: String?
    public var media: MediaPolicy
    /// Request bodies larger than this are refused (413).
    public var maxBodyBytes: Int
    /// Images of more pixels than this are refused (413).
    public var maxImagePixels: Int

    public init(
        modelName: String, defaultReduction: ReductionRequest = ReductionRequest(), parallel: Int = 4, maxQueue: Int = 64,
        apiKey: String? = nil, media: MediaPolicy = MediaPolicy(mediaPath: nil, maxImages: 4), maxBodyBytes: Int = 32 << 20,
        maxImagePixels: Int = 50_000_000
    ) {
        self.modelName = modelName
        self.defaultReduction = defaultReduction
        self.parallel = parallel
        self.maxQueue = maxQueue
        self.apiKey = apiKey
        self.media = media
        self.maxBodyBytes = maxBodyBytes
        self.maxImagePixels = maxImagePixels
    }
}

/// The server's model: loading until `ready` is called (/health answers 503 until then).
public final class ServedModel: @unchecked Sendable {
    private let lock = NSLock()
    private var scheduler: DecodeScheduler?
    private var loadError: String?
    public let metrics = ServerMetrics()
    public let created = Int(Date().timeIntervalSince1970)

    public init() {}

    /// Loads `directory` into a session and starts its scheduler.
    public func load(
        directory: URL, template: ConversationTemplate? = nil, options: ServerOptions,
        observer: (@Sendable (JobHandle, JobPhase) -> Void)? = nil
    ) throws {
        do {
            let session = try InferenceSession(directory: directory, imageOptions: ImageProcessingOptions(), template: template)
            session.imageDecoding.maxPixelCount = options.maxImagePixels
            // The default reduction must suit this decoder (layers in range, settings that go together).
            _ = try options.defaultReduction.makeReducer(decoder: session.decoder.shape, imageTokens: nil, positionAxes: session.decoder.positionAxes)
            ready(DecodeScheduler(session: session, slots: options.parallel, maxQueue: options.maxQueue, metrics: metrics, observer: observer))
        } catch {
            lock.withLock { loadError = "\(error)" }
            throw error
        }
    }

    public func ready(_ scheduler: DecodeScheduler) { lock.withLock { self.scheduler = scheduler } }

    /// The scheduler, or the error a request gets while there is none.
    func requireScheduler() throws(APIError) -> DecodeScheduler {
        let (scheduler, loadError) = lock.withLock { (self.scheduler, self.loadError) }
        if let scheduler { return scheduler }
        if let loadError { throw APIError.internalError("the model failed to load: \(loadError)") }
        throw APIError.loading
    }

    public func shutdown() { lock.withLock { scheduler }?.shutdown() }
}

/// The HTTP routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`, `GET /metrics`.
public func makeRouter(model: ServedModel, options: ServerOptions) -> Router<BasicRequestContext> {
    let router = Router()
    router.add(middleware: APIErrorMiddleware(apiKey: options.apiKey))
    router.get("health") { _, _ -> Response in
        _ = try model.requireScheduler()
        return jsonResponse(responseJSON(["status": "ok"]))
    }
    router.get("metrics") { _, _ -> Response in
        if let scheduler = try? model.requireScheduler() { model.metrics.queueDepth(scheduler.load.queued) }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: model.metrics.exposition())))
    }
    router.get("v1/models") { _, _ -> Response in
        let scheduler = try model.requireScheduler()
        let modalities = scheduler.session.visionLanguageModel == nil ? ["text"] : ["text", "image"]
        let entry = ModelEntry(
            id: options.modelName, created: model.created, contextLength: scheduler.session.decoder.contextLength,
            inputModalities: modalities)
        return jsonResponse(responseJSON(ModelList(data: [entry])))
    }
    router.post("v1/chat/completions") { request, _ -> Response in
        try await chatCompletion(request, model: model, options: options)
    }
    return router
}

/// The application on `host`:`port` (0: any free port).
public func makeApplication(
    model: ServedModel, options: ServerOptions, host: String, port: Int, onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: makeRouter(model: model, options: options),
        configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "pdrop"),
        onServerRunning: onServerRunning)
}

struct ModelEntry: Encodable {
    let id: String
    let object = "model"
    let created: Int
    let ownedBy = "pdrop"
    let contextLength: Int
    let inputModalities: [String]
    enum CodingKeys: String, CodingKey {
        case id, object, created, ownedBy = "owned_by", contextLength = "context_length", inputModalities = "input_modalities"
    }
}

struct ModelList: Encodable {
    let object = "list"
    let data: [ModelEntry]
}

func jsonResponse(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// Every error as OpenAI's JSON, and the API key check.
struct APIErrorMiddleware: RouterMiddleware {
    let apiKey: String?

    func handle(_ request: Request, context: BasicRequestContext, next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
        if let apiKey, request.uri.path != "/health", request.headers[.authorization] != "Bearer \(apiKey)" {
            return jsonResponse(APIError.unauthorized.json, status: .unauthorized)
        }
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return jsonResponse(error.json, status: .init(code: error.status))
        } catch is NIOTooManyBytesError {
            let apiError = APIError.tooLarge("the request body is larger than the server's limit (--max-body-bytes)")
            return jsonResponse(apiError.json, status: .init(code: apiError.status))
        } catch let error as HTTPError {
            let apiError: APIError
            switch error.status {
            case .notFound: apiError = .notFound(request.uri.path)
            default: apiError = APIError(status: Int(error.status.code), type: "invalid_request_error", code: nil, message: error.body ?? "\(error.status)")
            }
            return jsonResponse(apiError.json, status: .init(code: apiError.status))
        }
    }
}

/// The status and OpenAI error of an engine error: what the request got wrong is 400 (an
/// image over the pixel limit 413), anything else 500.
func apiError(_ error: any Error) -> APIError {
    switch error {
    case let error as APIError: return error
    case let error as SchedulerError:
        return error == .shuttingDown ? APIError(status: 503, type: "unavailable_error", code: "shutting_down", message: "\(error)") : .busy("\(error)")
    case let error as ImageError:
        if case .tooManyPixels = error.reason { return .tooLarge("\(error) (--max-image-pixels)") }
        return .badRequest("\(error)")
    case let error as PipelineError:
        if case .promptTooLong = error { return .badRequest("\(error)", code: "context_length_exceeded") }
        return .badRequest("\(error)")
    case is GenerationError, is ReductionSettingError, is DecoderInputError, is ImageProcessingError, is SamplingError:
        return .badRequest("\(error)")
    default:
        return .internalError("\(error)")
    }
}

/// `POST /v1/chat/completions`: the request becomes a job; the response is one JSON object or a
/// stream of server-sent events. A client that goes away (closes its side of the connection, or
/// a stream's write fails) cancels its job wherever it is: queued, in prefill or decoding.
func chatCompletion(_ request: Request, model: ServedModel, options: ServerOptions) async throws -> Response {
    let scheduler = try model.requireScheduler()
    let connection = ConnectionWatch(request.body, bodyLimit: options.maxBodyBytes)
    do {
        let body = try await connection.body()
        let chat = try ChatCompletionRequest.decode(Data(buffer: body))
        let job = try chat.job(
            defaultReduction: options.defaultReduction, media: options.media, contextLength: scheduler.session.decoder.contextLength)
        let handle: JobHandle
        do {
            handle = try scheduler.submit(job)
        } catch {
            throw apiError(error)
        }
        connection.cancelOnClose(handle)
        return try await respond(to: chat, handle: handle, connection: connection, options: options)
    } catch {
        await connection.stop()
        throw error
    }
}

/// The response to a submitted job. Nothing is sent before its prefill, so a request the
/// engine refuses (an unreadable image, a prompt longer than the context) gets its status.
private func respond(to chat: ChatCompletionRequest, handle: JobHandle, connection: ConnectionWatch, options: ServerOptions) async throws -> Response {
    let id = "chatcmpl-\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
    let created = Int(Date().timeIntervalSince1970)
    var events = handle.events.makeAsyncIterator()
    let prefill: PrefillReport
    switch await events.next() {
    case let .prefilled(report)?: prefill = report
    case let .failed(error)?: throw apiError(error)
    case .finished?, .text?, nil: throw APIError.internalError("the request was cancelled before its prefill")
    }
    // The connection watch reads the connection to its end: the server closes it after the response.
    var headers = HTTPFields()
    headers[.connection] = "close"

    if !chat.streams {
        var text = ""
        while let event = await events.next() {
            switch event {
            case let .text(piece): text += piece
            case let .finished(result):
                await connection.stop()
                let completion = ChatCompletion(
                    id: id, created: created, model: options.modelName,
                    choices: [.init(message: .init(content: result.text ?? text), finishReason: finishReason(result.stopReason))],
                    usage: Usage(promptTokens: prefill.promptTokens, completionTokens: result.tokens.count),
                    timings: Timings(prefill: prefill, result: result))
                var response = jsonResponse(responseJSON(completion))
                response.headers[.connection] = "close"
                return response
            case let .failed(error): throw apiError(error)
            case .prefilled: continue
            }
        }
        throw APIError.internalError("the request ended without a result")
    }

    headers[.contentType] = "text/event-stream"
    headers[.cacheControl] = "no-cache"
    let includeUsage = chat.includesUsageInStream, modelName = options.modelName
    let streamedEvents = UnsafeTransfer(events)
    return Response(status: .ok, headers: headers, body: ResponseBody { writer in
        var events = streamedEvents.value
        func chunk(_ delta: ChatCompletionChunk.Choice.Delta?, finish: String? = nil, usage: Usage? = nil, timings: Timings? = nil) -> ByteBuffer {
            let choices = delta.map { [ChatCompletionChunk.Choice(delta: $0, finishReason: finish)] } ?? []
            return ByteBuffer(string: ChatCompletionChunk(
                id: id, created: created, model: modelName, choices: choices, usage: usage, timings: timings).event)
        }
        do {
            try await writer.write(chunk(.init(role: "assistant", content: "")))
            while let event = await events.next() {
                switch event {
                case let .text(piece):
                    try await writer.write(chunk(.init(role: nil, content: piece)))
                case let .finished(result):
                    let timings = Timings(prefill: prefill, result: result)
                    try await writer.write(chunk(.init(role: nil, content: nil), finish: finishReason(result.stopReason), timings: timings))
                    if includeUsage {
                        try await writer.write(chunk(nil, usage: Usage(promptTokens: prefill.promptTokens, completionTokens: result.tokens.count)))
                    }
                case let .failed(error):
                    // The headers are sent: the error goes in the stream, as OpenAI's does.
                    try await writer.write(ByteBuffer(string: "data: " + String(decoding: apiError(error).json, as: UTF8.self) + "\n\n"))
                case .prefilled:
                    continue
                }
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
        } catch {
            // A write failed: the client went away, and its job is stopped.
            handle.cancel()
            await connection.stop()
            throw error
        }
        await connection.stop()
        try await writer.finish(nil)
    })
}

/// A value moved into a closure that runs once, later (an iterator handed to the response body).
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Reads a request's body, then watches the connection until `stop()`: if the client closes its
/// side first, the job given to `cancelOnClose` is cancelled (also when it closed before the job
/// existed). Hummingbird's `consumeWithInboundCloseHandler` does the watching, on a task of its
/// own; `stop()` waits for that task, since the server reads the connection again after the
/// response (which then closes it) and two readers at once are not allowed.
final class ConnectionWatch: Sendable {
    /// Whether the client has closed, and the job to cancel when it does.
    private final class ClosedState: @unchecked Sendable {
        private let lock = NSLock()
        private var closed = false
        private var handle: JobHandle?

        func watch(_ job: JobHandle) {
            let alreadyClosed = lock.withLock { handle = job; return closed }
            if alreadyClosed { job.cancel() }
        }

        func clientClosed() { lock.withLock { closed = true; return handle }?.cancel() }
    }

    private let state = ClosedState()
    private let bodyStream: AsyncThrowingStream<ByteBuffer, any Error>
    private let done: AsyncStream<Void>.Continuation
    private let watching: Task<Void, Never>

    init(_ requestBody: RequestBody, bodyLimit: Int) {
        let (bodyStream, bodyContinuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let (doneStream, done) = AsyncStream.makeStream(of: Void.self)
        self.bodyStream = bodyStream
        self.done = done
        let state = self.state
        watching = Task {
            do {
                try await requestBody.consumeWithInboundCloseHandler({ body in
                    bodyContinuation.yield(try await body.collect(upTo: bodyLimit))
                    bodyContinuation.finish()
                    for await _ in doneStream {}
                }, onInboundClosed: { state.clientClosed() })
            } catch {
                bodyContinuation.finish(throwing: error)
            }
        }
    }

    deinit { done.finish() }

    /// The whole request body (throws the body's error, e.g. over the limit).
    func body() async throws -> ByteBuffer {
        for try await bytes in bodyStream { return bytes }
        throw APIError.badRequest("the request body ended early")
    }

    func cancelOnClose(_ job: JobHandle) { state.watch(job) }

    /// Stops watching and waits until the watch no longer reads the connection.
    func stop() async {
        done.finish()
        await watching.value
    }
}
