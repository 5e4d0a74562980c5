import FileAccess
import Engine
import Foundation

/// An error as OpenAI's API returns it: `{"error": {"message", "type", "code"}}` with its status.
public struct APIError: Error, Equatable, Sendable, CustomStringConvertible {
    public let status: Int
    public let type: String
    public let code: String?
    public let message: String

    public var description: String { message }

    public static func badRequest(_ message: String, code: String? = nil) -> APIError {
        APIError(status: 400, type: "invalid_request_error", code: code, message: message)
    }
    public static func tooLarge(_ message: String) -> APIError {
        APIError(status: 413, type: "invalid_request_error", code: "request_too_large", message: message)
    }
    public static let unauthorized = APIError(
        status: 401, type: "authentication_error", code: "invalid_api_key", message: "invalid or missing API key (Authorization: Bearer ...)")
    public static let loading = APIError(status: 503, type: "unavailable_error", code: "model_loading", message: "the model is still loading")
    public static func busy(_ message: String) -> APIError { APIError(status: 503, type: "unavailable_error", code: "queue_full", message: message) }
    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, type: "not_found_error", code: nil, message: "no endpoint \(path); see /v1/chat/completions, /v1/models, /health, /metrics")
    }
    public static func internalError(_ message: String) -> APIError { APIError(status: 500, type: "server_error", code: nil, message: message) }

    struct Body: Encodable {
        struct Inner: Encodable {
            let message: String
            let type: String
            let code: String?
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(message, forKey: .message)
                try container.encode(type, forKey: .type)
                try container.encode(code, forKey: .code)  // null when there is none, as OpenAI
            }
            enum CodingKeys: String, CodingKey { case message, type, code }
        }
        let error: Inner
    }

    public var json: Data { responseJSON(Body(error: .init(message: message, type: type, code: code))) }
}

/// `usage` of a response.
struct Usage: Encodable {
    let promptTokens: Int
    let completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }
    enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens" }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// llama.cpp's `timings` object, plus what the reduction did.
struct Timings: Encodable {
    let promptN: Int
    let promptMs: Double
    let promptPerSecond: Double
    let predictedN: Int
    let predictedMs: Double
    let predictedPerSecond: Double
    let imageTokens: Int
    let keptImageTokensPerDrop: [Int]
    let reduction: String
    let prefillFlops: Double
    let prefillFlopsSaved: Double

    enum CodingKeys: String, CodingKey {
        case promptN = "prompt_n", promptMs = "prompt_ms", promptPerSecond = "prompt_per_second"
        case predictedN = "predicted_n", predictedMs = "predicted_ms", predictedPerSecond = "predicted_per_second"
        case imageTokens = "image_tokens", keptImageTokensPerDrop = "kept_image_tokens_per_drop", reduction
        case prefillFlops = "prefill_flops", prefillFlopsSaved = "prefill_flops_saved"
    }

    init(prefill: PrefillReport, result: GenerationResult) {
        let promptSeconds = prefill.visionSeconds + prefill.prefillSeconds
        promptN = prefill.promptTokens
        promptMs = promptSeconds * 1000
        promptPerSecond = promptSeconds > 0 ? Double(prefill.promptTokens) / promptSeconds : 0
        // As llama.cpp counts: the first token comes with the prompt, the rest from decode steps.
        predictedN = result.tokens.count
        predictedMs = result.decodeSeconds * 1000
        predictedPerSecond = result.decodeTokensPerSecond
        imageTokens = prefill.imageTokens
        keptImageTokensPerDrop = prefill.keptImageTokensPerDrop
        reduction = prefill.reduction
        prefillFlops = prefill.prefillFLOPs
        prefillFlopsSaved = prefill.prefillFLOPsSaved
    }
}

/// OpenAI's `finish_reason` of a stop reason.
func finishReason(_ reason: StopReason) -> String {
    switch reason {
    case .endOfSequence, .stopString: return "stop"
    case .maxTokens, .contextFull: return "length"
    case .cancelled: return "cancelled"
    }
}

/// A `chat.completion` object.
struct ChatCompletion: Encodable {
    struct Choice: Encodable {
        struct Message: Encodable { let role = "assistant"; let content: String }
        let index = 0
        let message: Message
        let finishReason: String
        enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason" }
    }
    let id: String
    let object = "chat.completion"
    let created: Int
    let model: String
    let choices: [Choice]
    let usage: Usage
    let timings: Timings
}

/// A `chat.completion.chunk` object of a stream.
struct ChatCompletionChunk: Encodable {
    struct Choice: Encodable {
        struct Delta: Encodable {
            let role: String?
            let content: String?
        }
        let index = 0
        let delta: Delta
        let finishReason: String?
        enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason" }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(delta, forKey: .delta)
            try container.encode(finishReason, forKey: .finishReason)  // null until the last, as OpenAI
        }
    }
    let id: String
    let object = "chat.completion.chunk"
    let created: Int
    let model: String
    let choices: [Choice]
    let usage: Usage?
    let timings: Timings?

    /// A server-sent event: `data: {json}` and a blank line.
    var event: String { "data: " + String(decoding: responseJSON(self), as: UTF8.self) + "\n\n" }
}

/// A response body: `encodeJSON`, which cannot fail for these types.
func responseJSON<T: Encodable>(_ value: T) -> Data {
    do {
        return try encodeJSON(value)
    } catch {
        preconditionFailure("encoding \(T.self): \(error)")
    }
}
