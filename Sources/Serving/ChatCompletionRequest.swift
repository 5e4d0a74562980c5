import Engine
import FileAccess
import Foundation
import TokenReduction

/// The body of `POST /v1/chat/completions` as OpenAI's API defines it, plus this server's
/// reduction fields. Fields a client may send that change nothing here (`user`, `logit_bias`
/// empty, `frequency_penalty` 0, ...) are ignored; fields that would change the answer and are
/// not supported are refused by `ChatCompletionRequest.job`.
public struct ChatCompletionRequest: Decodable, Sendable {
    public struct Message: Decodable, Sendable {
        public let role: String
        public let content: Content?
    }

    /// A message's content: a string, or a list of parts.
    public enum Content: Decodable, Sendable {
        case text(String)
        case parts([Part])

        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else {
                self = .parts(try container.decode([Part].self))
            }
        }
    }

    public struct Part: Decodable, Sendable {
        public struct ImageURL: Decodable, Sendable { public let url: String }
        public let type: String
        public let text: String?
        public let imageURL: ImageURL?
        enum CodingKeys: String, CodingKey { case type, text, imageURL = "image_url" }
    }

    /// A string or a list of strings.
    public struct StopStrings: Decodable, Sendable {
        public let values: [String]
        public init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let one = try? container.decode(String.self) {
                values = [one]
            } else {
                values = try container.decode([String].self)
            }
        }
    }

    public struct StreamOptions: Decodable, Sendable {
        public let includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    /// `"pyramid_drop": {"layers": [...], "ratios": [...]}`, `{"budget_tokens": N}` or
    /// `{"lambda": λ, "stages": S}`; `positions` "reindex" or "preserve".
    public struct PyramidDropFields: Decodable, Sendable {
        public let layers: [Int]?
        public let ratios: [Double]?
        public let lambda: Double?
        public let stages: Int?
        public let budgetTokens: Double?
        public let positions: String?
        enum CodingKeys: String, CodingKey { case layers, ratios, lambda, stages, budgetTokens = "budget_tokens", positions }
    }

    /// `"fastv": {"layer": K, "ratio": R}` or `{"budget_tokens": N}`.
    public struct FastVFields: Decodable, Sendable {
        public let layer: Int?
        public let ratio: Double?
        public let budgetTokens: Double?
        public let positions: String?
        enum CodingKeys: String, CodingKey { case layer, ratio, budgetTokens = "budget_tokens", positions }
    }

    public let model: String?
    public let messages: [Message]
    public let maxTokens: Int?
    public let maxCompletionTokens: Int?
    public let temperature: Float?
    public let topP: Float?
    public let topK: Int?
    public let seed: UInt64?
    public let stop: StopStrings?
    public let n: Int?
    public let stream: Bool?
    public let streamOptions: StreamOptions?
    public let frequencyPenalty: Double?
    public let presencePenalty: Double?
    public let logprobs: Bool?
    public let tools: [AnyDecodable]?
    public let pyramidDrop: PyramidDropFields?
    public let fastV: FastVFields?
    public let reduction: String?

    enum CodingKeys: String, CodingKey {
        case model, messages, temperature, seed, stop, n, stream, logprobs, tools, reduction
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", topP = "top_p", topK = "top_k"
        case streamOptions = "stream_options", frequencyPenalty = "frequency_penalty", presencePenalty = "presence_penalty"
        case pyramidDrop = "pyramid_drop", fastV = "fastv"
    }

    public var streams: Bool { stream ?? false }
    public var includesUsageInStream: Bool { streamOptions?.includeUsage ?? false }
}

/// Any JSON value, skipped (for fields only checked for presence).
public struct AnyDecodable: Decodable, Sendable {
    public init(from decoder: any Decoder) throws {}
}

/// Where the server may read images from and how many a request may carry.
public struct MediaPolicy: Sendable {
    /// `file://` URLs are read only under this directory (nil: refused).
    public var mediaPath: URL?
    public var maxImages: Int

    public init(mediaPath: URL?, maxImages: Int) {
        self.mediaPath = mediaPath?.resolvingSymlinksInPath().standardizedFileURL
        self.maxImages = maxImages
    }
}

extension ChatCompletionRequest {
    /// Decodes a request body, naming the field that is wrong.
    public static func decode(_ body: Data) throws(APIError) -> ChatCompletionRequest {
        do {
            return try JSONDecoder().decode(ChatCompletionRequest.self, from: body)
        } catch let error as DecodingError {
            throw .badRequest(describeDecodingError(error))
        } catch {
            throw .badRequest("the request body is not JSON: \(error.localizedDescription)")
        }
    }

    /// The engine's job for this request: messages with their images, the reduction (the
    /// request's fields, else `defaultReduction`) and the generation parameters, every field
    /// checked. `contextLength` is the model's: `max_tokens` defaults to what the context leaves.
    public func job(defaultReduction: ReductionRequest, media: MediaPolicy, contextLength: Int) throws(APIError) -> GenerationJob {
        if messages.isEmpty { throw .badRequest("messages: at least one message is needed") }
        if let n, n != 1 { throw .badRequest("n: only 1 choice per request is supported, got \(n)") }
        if let penalty = frequencyPenalty, penalty != 0 { throw .badRequest("frequency_penalty: not supported (send 0 or leave it out)") }
        if let penalty = presencePenalty, penalty != 0 { throw .badRequest("presence_penalty: not supported (send 0 or leave it out)") }
        if logprobs == true { throw .badRequest("logprobs: not supported") }
        if let tools, !tools.isEmpty { throw .badRequest("tools: function calling is not supported by this model") }
        if maxTokens != nil && maxCompletionTokens != nil && maxTokens != maxCompletionTokens {
            throw .badRequest("max_tokens and max_completion_tokens differ; send one")
        }
        let limit = maxCompletionTokens ?? maxTokens ?? contextLength
        if limit < 1 { throw .badRequest("max_tokens: must be at least 1, got \(limit)") }

        var chat: [ChatMessage] = []
        var imageCount = 0
        for (index, message) in messages.enumerated() {
            let field = "messages[\(index)]"
            guard let role = ChatMessage.Role(rawValue: message.role == "developer" ? "system" : message.role) else {
                throw .badRequest("\(field).role: '\(message.role)' is not one of system, developer, user, assistant")
            }
            var parts: [ChatMessage.Part] = []
            switch message.content {
            case nil: throw .badRequest("\(field).content: missing")
            case let .text(text)?: parts = [.text(text)]
            case let .parts(list)?:
                for (partIndex, part) in list.enumerated() {
                    let partField = "\(field).content[\(partIndex)]"
                    switch part.type {
                    case "text":
                        guard let text = part.text else { throw .badRequest("\(partField).text: missing") }
                        parts.append(.text(text))
                    case "image_url":
                        guard let url = part.imageURL?.url else { throw .badRequest("\(partField).image_url.url: missing") }
                        if role != .user { throw .badRequest("\(partField): images are accepted in user messages only") }
                        imageCount += 1
                        if imageCount > media.maxImages {
                            throw .tooLarge("\(partField): more than \(media.maxImages) image\(media.maxImages == 1 ? "" : "s") in one request (--max-images)")
                        }
                        parts.append(.image(try Self.imageSource(url, field: "\(partField).image_url.url", media: media)))
                    default:
                        throw .badRequest("\(partField).type: '\(part.type)' is not supported (text or image_url)")
                    }
                }
            }
            chat.append(ChatMessage(role: role, parts: parts))
        }
        if chat.last?.role != .user { throw .badRequest("messages: the last message must be the user's") }

        var sampling = SamplingParameters(temperature: temperature ?? 1, topK: topK ?? 0, topP: topP ?? 1, seed: seed)
        if sampling.temperature == 0 { sampling.topP = 1 }
        do {
            try sampling.validate()
        } catch {
            throw .badRequest("\(error)")
        }
        let parameters = GenerationParameters(maxNewTokens: limit, stopStrings: stop?.values ?? [], sampling: sampling)
        return GenerationJob(input: .messages(chat), reduction: try reductionRequest(default: defaultReduction), parameters: parameters)
    }

    /// The request's reduction: at most one of `reduction: "none"`, `pyramid_drop`, `fastv`.
    func reductionRequest(default defaultReduction: ReductionRequest) throws(APIError) -> ReductionRequest {
        let given = [reduction != nil, pyramidDrop != nil, fastV != nil].filter { $0 }.count
        if given > 1 { throw .badRequest("give one of reduction, pyramid_drop and fastv") }
        var request = ReductionRequest()
        func positions(_ text: String?, field: String) throws(APIError) -> PositionMode? {
            guard let text else { return nil }
            guard let mode = PositionMode(rawValue: text) else { throw .badRequest("\(field).positions: '\(text)' is not reindex or preserve") }
            return mode
        }
        if let reduction {
            guard reduction == "none" else {
                throw .badRequest("reduction: '\(reduction)' is not supported; send \"none\", or a pyramid_drop or fastv object")
            }
            request.kind = .none
        } else if let fields = pyramidDrop {
            request.kind = .pdrop
            request.layers = fields.layers
            request.ratios = fields.ratios
            request.lambda = fields.lambda
            request.stages = fields.stages
            request.budget = fields.budgetTokens.map { .averageImageTokens($0) }
            request.positions = try positions(fields.positions, field: "pyramid_drop")
        } else if let fields = fastV {
            request.kind = .fastv
            request.fastVLayer = fields.layer
            request.fastVRatio = fields.ratio
            request.budget = fields.budgetTokens.map { .averageImageTokens($0) }
            request.positions = try positions(fields.positions, field: "fastv")
        } else {
            request = defaultReduction
        }
        return request
    }

    /// A `data:` URL's bytes, or a `file://` path under the media path; nothing remote.
    static func imageSource(_ url: String, field: String, media: MediaPolicy) throws(APIError) -> ImageSource {
        if url.hasPrefix("data:") {
            guard let comma = url.firstIndex(of: ","), url[..<comma].hasSuffix(";base64") else {
                throw .badRequest("\(field): a data: URL must be base64 (data:image/png;base64,...)")
            }
            let mediaType = url[url.index(url.startIndex, offsetBy: 5)..<comma].dropLast(";base64".count)
            guard ["image/png", "image/jpeg", "image/jpg"].contains(mediaType.lowercased()) else {
                throw .badRequest("\(field): media type '\(mediaType)' is not supported (image/png or image/jpeg)")
            }
            guard let data = Data(base64Encoded: String(url[url.index(after: comma)...]), options: .ignoreUnknownCharacters) else {
                throw .badRequest("\(field): the base64 data does not decode")
            }
            return .bytes(data, name: field)
        }
        if url.hasPrefix("file://") {
            guard let root = media.mediaPath else {
                throw .badRequest("\(field): file:// URLs are refused; the server reads files only under a --media-path, and none was given")
            }
            guard let fileURL = URL(string: url), fileURL.isFileURL else { throw .badRequest("\(field): '\(url)' is not a valid file URL") }
            let resolved = fileURL.resolvingSymlinksInPath().standardizedFileURL
            guard resolved.path.hasPrefix(root.path.hasSuffix("/") ? root.path : root.path + "/") else {
                throw .badRequest("\(field): \(fileURL.path) is outside the media path \(root.path)")
            }
            return .file(resolved)
        }
        if url.hasPrefix("http://") || url.hasPrefix("https://") {
            throw .badRequest("\(field): remote image URLs are not fetched; send the image as a data: URL (base64)")
        }
        throw .badRequest("\(field): '\(url.prefix(40))' is neither a data: URL nor a file:// URL")
    }
}
