import FileAccess
import Foundation
import SafeTensors

// MARK: - Errors

/// A config.json that cannot describe a model we run. Names the file and the key.
public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case cannotRead(file: String, reason: String)
    case invalidJSON(file: String, detail: String)
    case unsupportedModelType(file: String, modelType: String, supported: [String])
    case invalidValue(file: String, key: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(file, reason): return "\(file): cannot read: \(reason)"
        case let .invalidJSON(file, detail): return "\(file): \(detail)"
        case let .unsupportedModelType(file, modelType, supported):
            return "\(file): model_type '\(modelType)' is not supported (expected one of: \(supported.map { "'\($0)'" }.joined(separator: ", ")))"
        case let .invalidValue(file, key, reason): return "\(file): '\(key)' \(reason)"
        }
    }
}

// MARK: - Defaults for absent keys

extension KeyedDecodingContainer {
    /// Replaces `value` (the reference's default) with the file's value when the key is present:
    /// the one way configurations take transformers' defaults for absent keys.
    func update<T: Decodable>(_ value: inout T, _ key: Key) throws {
        if let decoded = try decodeIfPresent(T.self, forKey: key) { value = decoded }
    }

    /// An integer or a list of integers (`eos_token_id`, `vision_feature_layer`), as a list.
    func integerList(_ key: Key) throws -> [Int]? {
        if let single = try? decodeIfPresent(Int.self, forKey: key) { return [single] }
        if let list = try? decodeIfPresent([Int].self, forKey: key) { return list }
        if contains(key), try !decodeNil(forKey: key) {
            throw DecodingError.typeMismatch(
                Int.self, .init(codingPath: codingPath + [key], debugDescription: "\(key.stringValue) is neither an integer nor a list of integers"))
        }
        return nil
    }
}

/// Checks that each named size is positive, naming the first that is not.
func requirePositive(_ sizes: KeyValuePairs<String, Int>, file: String, keyPrefix: String = "") throws {
    for (key, value) in sizes where value <= 0 {
        throw ConfigurationError.invalidValue(file: file, key: keyPrefix + key, reason: "must be positive, got \(value)")
    }
}

// MARK: - config.json

/// What a checkpoint directory's config.json describes: a decoder alone, a LLaVA-style
/// vision-language model (every family registered with that configuration schema, told apart by
/// `model_type`), or a Qwen2-VL. Which family builds the model is the registry's decision (`ModelRegistry`).
public enum ModelConfiguration: Equatable, Sendable {
    case llama(LlamaConfiguration)
    case llava(LlavaConfiguration)
    case qwen2VL(Qwen2VLConfiguration)

    /// The language model's configuration, whichever the kind.
    public var text: LlamaConfiguration {
        switch self {
        case let .llama(configuration): return configuration
        case let .llava(configuration): return configuration.textConfig
        case let .qwen2VL(configuration): return configuration.text
        }
    }

    /// Reads and validates `config.json`, choosing the family by `model_type` / `architectures`.
    public static func load(from url: URL) throws -> ModelConfiguration {
        try parse(try readConfigurationFile(url), file: url.path)
    }

    public static func parse(_ data: Data, file: String) throws -> ModelConfiguration {
        try ModelRegistry.family(forConfiguration: data, file: file).parse(data, file)
    }
}

/// The bytes of a config.json, or an error naming it.
func readConfigurationFile(_ url: URL) throws -> Data {
    switch readWholeFile(atPath: url.path) {
    case .success(let bytes): return Data(bytes)
    case .failure(let error): throw ConfigurationError.cannotRead(file: url.path, reason: error.reason)
    }
}

/// Decodes `T` from config.json bytes, turning decoding errors into `ConfigurationError`s that
/// name the file and the key.
func decodeConfiguration<T: Decodable>(
    _ type: T.Type, from data: Data, file: String, userInfo: [CodingUserInfoKey: any Sendable] = [:]
) throws -> T {
    do {
        let decoder = JSONDecoder()
        decoder.userInfo = userInfo
        return try decoder.decode(T.self, from: data)
    } catch let error as ConfigurationError {
        throw error
    } catch {
        throw ConfigurationError.invalidJSON(file: file, detail: describeDecodingError(error))
    }
}
