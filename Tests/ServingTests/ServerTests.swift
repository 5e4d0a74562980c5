import Engine
import Foundation
import Hummingbird
import HummingbirdTesting
import Models
import NIOCore
import Serving
import Testing
import TestSupport

/// The tiny LLaVA fixture, its photo as a data: URL, and what `InferenceSession.generate` answers
/// alone: the reference every server response is compared with.
struct ServerFixture {
    static let directory = Fixtures.url("tiny-llava")
    static let imageData = try! Data(contentsOf: Fixtures.url("images/chelsea.jpg"))
    static let dataURL = "data:image/jpeg;base64," + imageData.base64EncodedString()

    /// A loaded model under `options` (`observer` sees each job's phases).
    static func served(_ options: ServerOptions = options(), observer: (@Sendable (JobHandle, JobPhase) -> Void)? = nil) throws -> ServedModel {
        let model = ServedModel()
        try model.load(directory: directory, options: options, observer: observer)
        return model
    }

    static func options(parallel: Int = 4, maxQueue: Int = 8) -> ServerOptions {
        ServerOptions(modelName: "tiny-llava", parallel: parallel, maxQueue: maxQueue)
    }

    /// The request body of one question about the photo (greedy), with extra fields.
    static func body(question: String = "What is in the picture?", maxTokens: Int = 6, image: Bool = true, extra: [String: Any] = [:]) -> ByteBuffer {
        var content: [[String: Any]] = [["type": "text", "text": question]]
        if image { content.insert(["type": "image_url", "image_url": ["url": dataURL]], at: 0) }
        var object: [String: Any] = ["model": "tiny-llava", "messages": [["role": "user", "content": content]], "max_tokens": maxTokens, "temperature": 0]
        object.merge(extra) { $1 }
        return ByteBuffer(data: try! JSONSerialization.data(withJSONObject: object))
    }

    /// What the session generates alone for the same question, reduction and token count.
    static func expected(
        session: InferenceSession, question: String = "What is in the picture?", maxTokens: Int = 6, image: Bool = true,
        reduction: ReductionRequest = ReductionRequest()
    ) throws -> GenerationResult {
        var parts: [ChatMessage.Part] = [.text(question)]
        if image { parts.insert(.image(.bytes(imageData, name: "image")), at: 0) }
        let prompt = try session.prepare(.messages([ChatMessage(role: .user, parts: parts)]))
        return try session.generate(prompt, reducer: try session.reducer(reduction, for: prompt), parameters: GenerationParameters(maxNewTokens: maxTokens))
    }
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]

func json(_ response: TestResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any], "\(String(buffer: response.body))")
}

/// The response's JSON object, empty when it is none (for use inside #expect).
func parsed(_ response: TestResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]) ?? [:]
}

/// The `data:` payloads of a server-sent event stream, in order.
func events(_ response: TestResponse) -> [String] {
    String(buffer: response.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { event in
        event.hasPrefix("data: ") ? String(event.dropFirst(6)) : "not an event: \(event)"
    }
}

@Suite(.serialized) struct ServerTests {
    let model: ServedModel
    let session: InferenceSession

    init() throws {
        model = try ServerFixture.served()
        session = try InferenceSession(directory: ServerFixture.directory)
    }

    func app(_ options: ServerOptions = ServerFixture.options()) -> some ApplicationProtocol {
        Application(router: makeRouter(model: model, options: options))
    }

    @Test func aFullExchangeWithAnImageAnswersAsGenerateDoes() async throws {
        let expected = try ServerFixture.expected(session: session)
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body()) { response in
                #expect(response.status == .ok)
                let object = try json(response)
                #expect(object["object"] as? String == "chat.completion" && object["model"] as? String == "tiny-llava")
                #expect((object["id"] as? String)?.hasPrefix("chatcmpl-") == true)
                let choice = try #require((object["choices"] as? [[String: Any]])?.first)
                let message = try #require(choice["message"] as? [String: Any])
                #expect(message["role"] as? String == "assistant")
                #expect(message["content"] as? String == expected.text)
                #expect(choice["finish_reason"] as? String == (expected.stopReason == .maxTokens ? "length" : "stop"))
                let usage = try #require(object["usage"] as? [String: Int])
                #expect(usage["prompt_tokens"] == expected.promptTokens && usage["completion_tokens"] == expected.tokens.count)
                #expect(usage["total_tokens"] == expected.promptTokens + expected.tokens.count)
                let timings = try #require(object["timings"] as? [String: Any])
                #expect(timings["prompt_n"] as? Int == expected.promptTokens && timings["predicted_n"] as? Int == expected.tokens.count)
                #expect(timings["image_tokens"] as? Int == 576)
                // The server's default reduction is PyramidDrop's: 50%, 25%, 12.5% of 576.
                #expect(timings["kept_image_tokens_per_drop"] as? [Int] == [288, 144, 72])
                #expect((timings["prefill_flops_saved"] as? Double ?? 0) > 0)
            }
        }
    }

    @Test func aStreamSendsChunksThenUsageThenDone() async throws {
        let expected = try ServerFixture.expected(session: session)
        let body = ServerFixture.body(extra: ["stream": true, "stream_options": ["include_usage": true]])
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: body) { response in
                #expect(response.status == .ok && response.headers[.contentType] == "text/event-stream")
                let payloads = events(response)
                #expect(payloads.last == "[DONE]")
                let chunks = try payloads.dropLast().map { payload in
                    try #require(try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any], "\(payload)")
                }
                #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
                #expect(Set(chunks.compactMap { $0["id"] as? String }).count == 1)
                let choices = chunks.map { ($0["choices"] as? [[String: Any]]) ?? [] }
                let deltas = choices.compactMap { $0.first?["delta"] as? [String: Any] }
                #expect(deltas.first?["role"] as? String == "assistant")
                #expect(deltas.compactMap { $0["content"] as? String }.joined() == expected.text)
                // Every chunk but the last with choices has finish_reason null; the last says why.
                let reasons = choices.filter { !$0.isEmpty }.map { $0[0]["finish_reason"] as? String }
                #expect(reasons.dropLast().allSatisfy { $0 == nil } && reasons.last == (expected.stopReason == .maxTokens ? "length" : "stop"))
                // include_usage: one more chunk, with no choices and the usage.
                let usageChunk = try #require(chunks.last)
                #expect(choices.last?.isEmpty == true)
                #expect((usageChunk["usage"] as? [String: Int])?["completion_tokens"] == expected.tokens.count)
            }
        }
    }

    @Test(arguments: [
        (["reduction": "none"], ReductionRequest.noReduction, [Int]()),
        (["pyramid_drop": ["layers": [2, 4], "ratios": [0.25, 0.1]]], ReductionRequest.pyramidDrop(layers: [2, 4], ratios: [0.25, 0.1]), [144, 57]),
        (["fastv": ["layer": 3, "ratio": 0.75]], ReductionRequest.fastV(layer: 3, ratio: 0.75), nil),
        (["pyramid_drop": ["budget_tokens": 128]], ReductionRequest.budget(128), nil),
    ] as [([String: Any], ReductionRequest, [Int]?)])
    func eachRequestChoosesItsReduction(fields: [String: Any], reduction: ReductionRequest, kept: [Int]?) async throws {
        let expected = try ServerFixture.expected(session: session, reduction: reduction)
        let expectedKept = kept ?? expected.keptImageTokens.map { $0.reduce(0) { $0 + $1.count } }
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body(extra: fields)) { response in
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let object = try json(response)
                let timings = try #require(object["timings"] as? [String: Any])
                #expect(timings["kept_image_tokens_per_drop"] as? [Int] == expectedKept)
                let message = (object["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
                #expect(message?["content"] as? String == expected.text)
            }
        }
    }

    @Test func modelsHealthAndMetrics() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                let object = try json(response)
                let entry = try #require((object["data"] as? [[String: Any]])?.first)
                #expect(object["object"] as? String == "list" && entry["id"] as? String == "tiny-llava" && entry["object"] as? String == "model")
                #expect(entry["input_modalities"] as? [String] == ["text", "image"])
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok && parsed(response)["status"] as? String == "ok")
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body(maxTokens: 3)) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                for name in ["pdrop_requests_total", "pdrop_prompt_tokens_total", "pdrop_generated_tokens_total", "pdrop_prefill_seconds_total",
                             "pdrop_decode_seconds_total", "pdrop_image_tokens_kept_total", "pdrop_image_tokens_dropped_total",
                             "pdrop_queue_depth", "pdrop_requests_rejected_total"] {
                    #expect(text.contains("# TYPE \(name)"), "\(name) missing from\n\(text)")
                }
                let generated = text.split(separator: "\n").first { $0.hasPrefix("pdrop_generated_tokens_total ") }
                #expect(generated.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 >= 3 } == true, "\(text)")
            }
        }
    }

    @Test(arguments: [
        ("{", 400, "not valid JSON"),
        (#"{"messages": []}"#, 400, "at least one message"),
        (#"{"model": "x"}"#, 400, "missing key 'messages'"),
        (#"{"messages": [{"role": "robot", "content": "hi"}]}"#, 400, "messages[0].role"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}"#, 400, "remote image URLs"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}"#, 400, "--media-path"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!!"}}]}]}"#, 400, "messages[0].content[0]"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}"#, 400, "messages[0].content[0]"),
        (#"{"messages": [{"role": "user", "content": [{"type": "audio"}]}]}"#, 400, "content[0].type"),
        (#"{"messages": [{"role": "user", "content": "hi"}], "n": 2}"#, 400, "n: only 1"),
        (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}"#, 400, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}"#, 400, "temperature"),
        (#"{"messages": [{"role": "user", "content": "hi"}], "reduction": "none", "fastv": {}}"#, 400, "one of reduction"),
        (#"{"messages": [{"role": "user", "content": "hi"}], "pyramid_drop": {"layers": [9], "ratios": [0.5]}}"#, 400, "layer"),
        (#"{"messages": [{"role": "assistant", "content": "hi"}]}"#, 400, "last message"),
    ] as [(String, Int, String)])
    func aBadRequestIsRefusedWithItsReason(body: String, status: Int, message: String) async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ByteBuffer(string: body)) { response in
                #expect(Int(response.status.code) == status, "\(String(buffer: response.body))")
                let error = try #require(parsed(response)["error"] as? [String: Any])
                #expect((error["message"] as? String)?.contains(message) == true, "\(error)")
                #expect(error["type"] as? String == "invalid_request_error")
                #expect(error.keys.contains("code"))
            }
        }
    }

    @Test func limitsKeysLoadingAndUnknownPathsGetTheirStatus() async throws {
        // 413: body over the limit, too many images, an image over the pixel limit.
        var options = ServerFixture.options()
        options.maxBodyBytes = 1000
        try await app(options).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body()) { response in
                #expect(response.status == .contentTooLarge && parsed(response)["error"] != nil, "\(String(buffer: response.body))")
            }
        }
        options = ServerFixture.options()
        options.media.maxImages = 0
        try await app(options).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body()) { response in
                #expect(response.status == .contentTooLarge, "\(String(buffer: response.body))")
            }
        }
        options = ServerFixture.options()
        options.maxImagePixels = 1000
        let small = try ServerFixture.served(options)
        try await Application(router: makeRouter(model: small, options: options)).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body()) { response in
                #expect(response.status == .contentTooLarge, "\(String(buffer: response.body))")
                #expect(String(buffer: response.body).contains("pixels"))
            }
        }
        // 400: a prompt longer than the context.
        try await app().test(.router) { client in
            let long = String(repeating: "word ", count: 5000)
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body(question: long)) { response in
                #expect(response.status == .badRequest)
                #expect((parsed(response)["error"] as? [String: Any])?["code"] as? String == "context_length_exceeded")
            }
        }
        // 401 with --api-key, except /health.
        options = ServerFixture.options()
        options.apiKey = "secret"
        try await app(options).test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect((parsed(response)["error"] as? [String: Any])?["code"] as? String == "invalid_api_key")
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer secret"]) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/health", method: .get) { response in #expect(response.status == .ok) }
        }
        // 503 while loading; 404 elsewhere.
        let loading = ServedModel()
        try await Application(router: makeRouter(model: loading, options: ServerFixture.options())).test(.router) { client in
            for uri in ["/health", "/v1/models"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect((parsed(response)["error"] as? [String: Any])?["code"] as? String == "model_loading")
                }
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: ServerFixture.body()) { response in
                #expect(response.status == .serviceUnavailable)
            }
            try await client.execute(uri: "/v2/nothing", method: .get) { response in
                #expect(response.status == .notFound && parsed(response)["error"] != nil)
            }
        }
    }
}

extension ReductionRequest {
    static var noReduction: ReductionRequest { var request = ReductionRequest(); request.kind = .none; return request }
    static func pyramidDrop(layers: [Int], ratios: [Double]) -> ReductionRequest {
        var request = ReductionRequest()
        (request.layers, request.ratios) = (layers, ratios)
        return request
    }
    static func fastV(layer: Int, ratio: Double) -> ReductionRequest {
        var request = ReductionRequest()
        (request.kind, request.fastVLayer, request.fastVRatio) = (.fastv, layer, ratio)
        return request
    }
    static func budget(_ tokens: Double) -> ReductionRequest {
        var request = ReductionRequest()
        request.budget = .averageImageTokens(tokens)
        return request
    }
}
