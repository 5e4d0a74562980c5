import FileAccess
import Foundation
import Models
import SafeTensors
import TensorCore
import Tokenizer

/// `pdrop init`'s failures, each naming what is wrong.
public enum InitializationError: Error, Equatable, CustomStringConvertible {
    case notLlava(file: String, modelType: String)
    case outputNotEmpty(directory: String)
    case missingTokenizer(directory: String, file: String)
    case unknownTensor(name: String)
    case unsupportedDType(String)
    /// The tokenizer does not fit the config: its `<image>` id is not `image_token_index`, or it
    /// has more ids than the embedding has rows.
    case tokenizerMismatch(tokenizer: String, reason: String)

    public var description: String {
        switch self {
        case let .notLlava(file, modelType):
            return "\(file): 'model_type' is \(modelType); pdrop init builds LLaVA-1.5 models (model_type \"llava\")"
        case let .outputNotEmpty(directory): return "\(directory) is not empty; pdrop init does not overwrite (choose a new folder)"
        case let .missingTokenizer(directory, file): return "\(directory): no \(file) (the --tokenizer folder must hold a tokenizer)"
        case let .unknownTensor(name): return "no initialisation rule for the tensor \(name)"
        case let .unsupportedDType(dtype): return "dtype \(dtype) is not float32 or bfloat16"
        case let .tokenizerMismatch(tokenizer, reason): return "\(tokenizer) does not fit the config: \(reason)"
        }
    }
}

/// How transformers initialises each parameter of `LlavaForConditionalGeneration` built from a
/// config (random weights, before any training):
///
/// - LLaMA (`LlamaPreTrainedModel._init_weights` → `PreTrainedModel._init_weights`): every
///   `nn.Linear` and `nn.Embedding` weight ~ normal(0, text_config.initializer_range), biases 0,
///   `LlamaRMSNorm` weights 1.
/// - The projector and lm_head (`LlavaPreTrainedModel._init_weights`; in transformers 5 lm_head
///   belongs to `LlavaForConditionalGeneration` itself): `std = config.initializer_range` when
///   the LLaVA config has one, else `config.text_config.initializer_range`; Linear weights
///   ~ normal(0, std), biases 0.
/// - CLIP (`CLIPPreTrainedModel._init_weights`, modeling_clip.py), with
///   factor = vision_config.initializer_factor, d = hidden_size, L = num_hidden_layers:
///   `CLIPVisionEmbeddings`: class_embedding ~ normal(0, d^-0.5 · factor), patch_embedding
///   (a conv without bias) and position_embedding ~ normal(0, initializer_range · factor);
///   `CLIPAttention`: q/k/v ~ normal(0, d^-0.5 · (2L)^-0.5 · factor), out_proj ~ normal(0, d^-0.5 · factor);
///   `CLIPMLP`: fc1 ~ normal(0, (2d)^-0.5 · factor), fc2 ~ normal(0, d^-0.5 · (2L)^-0.5 · factor)
///   (fc2 takes `in_proj_std`, as the source does); `nn.LayerNorm` weight 1, bias 0; every
///   `nn.Linear` bias 0.
public struct InitializationRules: Equatable, Sendable {
    public enum Rule: Equatable, Sendable {
        case normal(std: Double)
        case ones
        case zeros
        /// A 2-D sine-cosine table as MAE's (He et al. 2022, `get_2d_sincos_pos_embed`): for a
        /// `side × side` patch grid in row-major order, the first half of each entry encodes the
        /// patch's row and the second half its column, each as [sin(p·ω), cos(p·ω)] with
        /// ω_k = 10000^(−k / (d/4)), k < d/4; the class token's entry is 0.
        case sineCosine2D(side: Int)
    }

    /// How the vision tower's position embedding starts: transformers' normal(0, 0.02), or MAE's
    /// 2-D sine-cosine table. From the table, a linear probe reads an object's left/right from the
    /// image tokens the language model receives with 0.99 accuracy before any training; from
    /// transformers' normal(0, 0.02), with 0.60
    /// (tools/task-model/linear_probe.py, models/README.md).
    public enum VisionPositions: String, CaseIterable, Sendable {
        case normal
        case sincos
    }

    public var textInitializerRange: Double = 0.02
    public var projectorInitializerRange: Double = 0.02
    public var visionInitializerRange: Double = 0.02
    public var visionInitializerFactor: Double = 1
    public var visionHidden: Int = 768
    public var visionLayers: Int = 12
    public var layout: LlavaLayout = .hub
    public var visionPositions: VisionPositions = .normal
    /// Patches per side of the vision tower's grid (image_size / patch_size).
    public var visionGridSide: Int = 24

    public init() {}

    /// Reads the ranges from config.json's raw object (the parsed configuration drops them);
    /// a range or factor that is not a positive number is an error naming its key.
    public init(configuration: LlavaConfiguration, json: [String: Any], file: String) throws {
        func positive(_ object: [String: Any]?, _ key: String, _ path: String, default value: Double?) throws -> Double? {
            guard let raw = object?[key] else { return value }
            guard let number = raw as? NSNumber, !(raw is Bool), number.doubleValue > 0, number.doubleValue.isFinite else {
                throw ConfigurationError.invalidValue(file: file, key: path, reason: "must be a positive number, found \(raw)")
            }
            return number.doubleValue
        }
        let text = json["text_config"] as? [String: Any], vision = json["vision_config"] as? [String: Any]
        textInitializerRange = try positive(text, "initializer_range", "text_config.initializer_range", default: 0.02)!
        projectorInitializerRange = try positive(json, "initializer_range", "initializer_range", default: textInitializerRange)!
        visionInitializerRange = try positive(vision, "initializer_range", "vision_config.initializer_range", default: 0.02)!
        visionInitializerFactor = try positive(vision, "initializer_factor", "vision_config.initializer_factor", default: 1)!
        visionHidden = configuration.visionConfig.hiddenSize
        visionLayers = configuration.visionConfig.numHiddenLayers
        visionGridSide = configuration.visionConfig.imageSize / configuration.visionConfig.patchSize
    }

    /// The rule of the tensor `name` (hub layout), or nil when there is none.
    public func rule(for name: String) -> Rule? {
        if name.hasSuffix(".bias") { return .zeros }
        if name.hasPrefix(layout.visionPrefix) {
            let local = String(name.dropFirst(layout.visionPrefix.count))
            let d = Double(visionHidden), factor = visionInitializerFactor
            let inProjection = pow(d, -0.5) * pow(2 * Double(visionLayers), -0.5) * factor
            if local == "embeddings.class_embedding" { return .normal(std: pow(d, -0.5) * factor) }
            if local == "embeddings.position_embedding.weight" && visionPositions == .sincos { return .sineCosine2D(side: visionGridSide) }
            if local == "embeddings.patch_embedding.weight" || local == "embeddings.position_embedding.weight" {
                return .normal(std: visionInitializerRange * factor)
            }
            if local == "pre_layrnorm.weight" || local == "post_layernorm.weight" || local.hasSuffix(".layer_norm1.weight")
                || local.hasSuffix(".layer_norm2.weight")
            {
                return .ones
            }
            for projection in ["q_proj", "k_proj", "v_proj"] where local.hasSuffix(".self_attn.\(projection).weight") {
                return .normal(std: inProjection)
            }
            if local.hasSuffix(".self_attn.out_proj.weight") { return .normal(std: pow(d, -0.5) * factor) }
            if local.hasSuffix(".mlp.fc1.weight") { return .normal(std: pow(2 * d, -0.5) * factor) }
            if local.hasSuffix(".mlp.fc2.weight") { return .normal(std: inProjection) }
            return nil
        }
        if name.hasPrefix(layout.projectorPrefix) {
            return name.hasSuffix(".weight") ? .normal(std: projectorInitializerRange) : nil
        }
        // transformers 5's LlavaForConditionalGeneration owns lm_head itself, so LLaVA's rule
        // (the LLaVA config's range) applies to it; check_init.py shows it with a top-level range.
        if name == layout.language.lmHeadPrefix + "weight" { return .normal(std: projectorInitializerRange) }
        if name.hasPrefix(layout.language.modelPrefix) {
            if name.hasSuffix("layernorm.weight") || name == layout.language.modelPrefix + "norm.weight" { return .ones }
            return name.hasSuffix(".weight") ? .normal(std: textInitializerRange) : nil
        }
        return nil
    }
}

/// A `WeightSource` that creates each tensor the model asks for by its rule and keeps it, so
/// that building `LlavaModel` over it yields exactly the checkpoint's names and shapes. Each
/// tensor has its own SplitMix64 stream, seeded from the seed and the tensor's name, so the values
/// do not depend on the order the model asks for them.
public final class InitializingWeightSource: WeightSource {
    public let rules: InitializationRules
    public let seed: UInt64
    /// The lm_head is absent when the embeddings are tied (transformers saves it so).
    public let omitted: Set<String>
    public private(set) var tensors: [String: Tensor] = [:]
    public private(set) var unknown: [String] = []

    public init(rules: InitializationRules, seed: UInt64, omitted: Set<String> = []) {
        self.rules = rules
        self.seed = seed
        self.omitted = omitted
    }

    /// Biases are present when the architecture requires them (`take(required:)`); optional
    /// ones (LLaMA's attention/MLP biases when off) are absent.
    public func contains(_ name: String) -> Bool { !name.hasSuffix(".bias") && !omitted.contains(name) }

    public func take(_ name: String, shape: [Int]) -> Tensor {
        let tensor = Tensor(shape: shape)
        switch rules.rule(for: name) {
        case nil:
            unknown.append(name)
        case .zeros:
            break
        case .ones:
            for index in 0..<tensor.count { tensor[index] = 1 }
        case let .normal(std):
            var generator = SplitMix64(seed: Self.streamSeed(seed: seed, name: name))
            Self.fillNormal(tensor.buffer, std: std, generator: &generator)
        case let .sineCosine2D(side):
            Self.fillSineCosine2D(tensor.buffer, side: side, width: shape[1])
        }
        tensors[name] = tensor
        return tensor
    }

    public func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        WeightMatrix(take(name, shape: [rows, columns]))
    }

    /// FNV-1a of the name's UTF-8 bytes, mixed with the seed.
    static func streamSeed(seed: UInt64, name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash ^ (seed &* 0x9E37_79B9_7F4A_7C15)
    }

    /// `values`: (1 + side², width), row-major; width divisible by 4.
    static func fillSineCosine2D(_ values: UnsafeMutableBufferPointer<Float>, side: Int, width: Int) {
        let quarter = width / 4
        values.update(repeating: 0)
        for patch in 0..<(side * side) {
            let row = values.baseAddress! + (1 + patch) * width  // (width): the patch's row
            for (half, position) in [patch / side, patch % side].enumerated() {
                for k in 0..<quarter {
                    let angle = Double(position) * pow(10000, -Double(k) / Double(quarter))
                    row[half * 2 * quarter + k] = Float(sin(angle))
                    row[half * 2 * quarter + quarter + k] = Float(cos(angle))
                }
            }
        }
    }

    /// Box–Muller: two uniforms u1 ∈ (0, 1], u2 ∈ [0, 1) (53-bit) give two independent normals
    /// r·cos(2πu2) and r·sin(2πu2), r = sqrt(−2 ln u1).
    static func fillNormal(_ values: UnsafeMutableBufferPointer<Float>, std: Double, generator: inout SplitMix64) {
        var index = 0
        while index < values.count {
            let u1 = Double((generator.next() >> 11) + 1) * 0x1p-53
            let u2 = Double(generator.next() >> 11) * 0x1p-53
            let radius = (-2 * log(u1)).squareRoot() * std
            values[index] = Float(radius * cos(2 * Double.pi * u2))
            if index + 1 < values.count { values[index + 1] = Float(radius * sin(2 * Double.pi * u2)) }
            index += 2
        }
    }
}

/// `pdrop init`: a LLaVA checkpoint of random weights, initialised as transformers initialises
/// `LlavaForConditionalGeneration(config)`, ready for `pdrop train --train all`.
public enum ModelInitialization {
    public struct Result {
        public let configuration: LlavaConfiguration
        public let tensors: [String: Tensor]
        /// The JSON object written as config.json.
        public let configurationJSON: [String: Any]
    }

    /// Parses and validates `data` (a llava-hf config.json) and creates its tensors.
    public static func initialize(
        configuration data: Data, file: String, seed: UInt64, dtype: String = "float32", visionPositions: InitializationRules.VisionPositions = .normal
    ) throws -> Result {
        guard case let .llava(configuration) = try ModelConfiguration.parse(data, file: file) else {
            let modelType = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["model_type"] as? String ?? "absent"
            throw InitializationError.notLlava(file: file, modelType: modelType)
        }
        guard configuration.modelType == "llava" else { throw InitializationError.notLlava(file: file, modelType: configuration.modelType) }
        guard var json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ConfigurationError.invalidJSON(file: file, detail: "config.json is not an object")
        }
        var rules = try InitializationRules(configuration: configuration, json: json, file: file)
        rules.visionPositions = visionPositions
        if visionPositions == .sincos && (configuration.visionConfig.hiddenSize % 4 != 0) {
            throw ConfigurationError.invalidValue(
                file: file, key: "vision_config.hidden_size", reason: "must be divisible by 4 for sine-cosine positions, found \(configuration.visionConfig.hiddenSize)")
        }
        let layout = LlavaLayout.hub
        let head = layout.language.lmHeadPrefix + "weight"
        let source = InitializingWeightSource(
            rules: rules, seed: seed, omitted: configuration.textConfig.tieWordEmbeddings ? [head] : [])
        _ = LlavaModel(configuration: configuration, loader: source, layout: layout)
        if let name = source.unknown.first { throw InitializationError.unknownTensor(name: name) }

        for key in ["torch_dtype", "dtype"] where json[key] != nil { json[key] = dtype }
        if json["torch_dtype"] == nil && json["dtype"] == nil { json["torch_dtype"] = dtype }
        for key in ["text_config", "vision_config"] {
            guard var nested = json[key] as? [String: Any] else { continue }
            for dtypeKey in ["torch_dtype", "dtype"] where nested[dtypeKey] != nil { nested[dtypeKey] = dtype }
            json[key] = nested
        }
        if json["model_type"] == nil { json["model_type"] = "llava" }
        if json["architectures"] == nil { json["architectures"] = ["LlavaForConditionalGeneration"] }
        return Result(configuration: configuration, tensors: source.tensors, configurationJSON: json)
    }

    /// Pretty JSON with sorted keys that keeps a float a float: JSONSerialization writes the
    /// parsed 2.0 as 2, and transformers 5's strict config fields (`initializer_factor: float`)
    /// then refuse the file.
    public static func jsonText(_ value: Any, indent: String = "") -> String {
        let inner = indent + "  "
        if let object = value as? [String: Any] {
            if object.isEmpty { return "{}" }
            let fields = object.keys.sorted().map { "\(inner)\(jsonText($0)): \(jsonText(object[$0]!, indent: inner))" }
            return "{\n" + fields.joined(separator: ",\n") + "\n\(indent)}"
        }
        if let string = value as? String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .withoutEscapingSlashes
            return String(decoding: (try? encoder.encode(string)) ?? Data("\"\"".utf8), as: UTF8.self)
        }
        if let array = value as? [Any] {
            if array.isEmpty { return "[]" }
            return "[\n" + array.map { inner + jsonText($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        }
        if value is NSNull { return "null" }
        if let number = value as? NSNumber {
            switch String(cString: number.objCType) {
            case "c", "B": return number.boolValue ? "true" : "false"
            case "d", "f": return number.doubleValue.description
            default: return number.int64Value.description
            }
        }
        return "null"
    }

    /// CLIP's image processor for `imageSize` (as llava-hf ships it for 336 px).
    public static func preprocessorConfiguration(imageSize: Int) -> [String: Any] {
        [
            "crop_size": ["height": imageSize, "width": imageSize], "do_center_crop": true, "do_convert_rgb": true,
            "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "CLIPImageProcessor", "processor_class": "LlavaProcessor", "resample": 3,
            "rescale_factor": 1.0 / 255.0, "size": ["shortest_edge": imageSize],
        ]
    }

    /// Writes the checkpoint: model.safetensors (`dtype` float32 or bfloat16), config.json, the
    /// tokenizer's files and a preprocessor_config.json for the vision tower's image size (the
    /// tokenizer folder's, resized, when it has one; else CLIP's).
    /// `output` must be absent or empty.
    @discardableResult
    public static func write(
        configuration configurationURL: URL, tokenizer: URL, output: URL, seed: UInt64, dtype: String = "float32",
        visionPositions: InitializationRules.VisionPositions = .normal
    ) throws -> Result {
        let manager = FileManager.default
        if let contents = try? manager.contentsOfDirectory(atPath: output.path), !contents.isEmpty {
            throw InitializationError.outputNotEmpty(directory: output.path)
        }
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: output.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw InitializationError.outputNotEmpty(directory: output.path)
        }
        guard manager.fileExists(atPath: tokenizer.appendingPathComponent("tokenizer.json").path) else {
            throw InitializationError.missingTokenizer(directory: tokenizer.path, file: "tokenizer.json")
        }
        let data: Data
        do { data = try readFileData(configurationURL) } catch {
            throw ConfigurationError.cannotRead(file: configurationURL.path, reason: error.reason)
        }
        let storage: SafeTensorsDType
        switch dtype {
        case "float32": storage = .float32
        case "bfloat16": storage = .bfloat16
        default: throw InitializationError.unsupportedDType(dtype)
        }
        let result = try initialize(configuration: data, file: configurationURL.path, seed: seed, dtype: dtype, visionPositions: visionPositions)
        let tokenizerFile = tokenizer.appendingPathComponent("tokenizer.json")
        let loadedTokenizer = try Tokenizer(tokenizerJSON: tokenizerFile)
        let imageTokenIndex = result.configuration.imageTokenIndex, vocabularySize = result.configuration.textConfig.vocabSize
        if let imageID = loadedTokenizer.tokenID("<image>"), imageID != imageTokenIndex {
            throw InitializationError.tokenizerMismatch(
                tokenizer: tokenizerFile.path, reason: "its <image> token is id \(imageID), the config's image_token_index is \(imageTokenIndex)")
        }
        if loadedTokenizer.vocabularySize > vocabularySize {
            throw InitializationError.tokenizerMismatch(
                tokenizer: tokenizerFile.path, reason: "it has \(loadedTokenizer.vocabularySize) ids, the config's text vocab_size is \(vocabularySize)")
        }

        try manager.createDirectory(at: output, withIntermediateDirectories: true)
        let items = result.tensors.map { SafeTensorsWriter.Item(name: $0.key, tensor: $0.value, dtype: storage) }
        try SafeTensorsWriter.write(
            items, metadata: ["format": "pt", "pdrop_init_seed": String(seed)], to: output.appendingPathComponent(TrainingCheckpoint.weightsFile))
        try Data((jsonText(result.configurationJSON) + "\n").utf8).write(to: output.appendingPathComponent("config.json"), options: .atomic)
        for name in TrainingCheckpoint.tokenizerFiles {
            let from = tokenizer.appendingPathComponent(name)
            guard manager.fileExists(atPath: from.path) else { continue }
            try manager.copyItem(at: from, to: output.appendingPathComponent(name))
        }
        // The tokenizer folder's processor config (its mean, std, resampling) with its sizes set
        // to this vision tower's image size, or CLIP's for that size.
        let imageSize = result.configuration.visionConfig.imageSize
        var preprocessor = preprocessorConfiguration(imageSize: imageSize)
        if let data = try? Data(contentsOf: tokenizer.appendingPathComponent("preprocessor_config.json")),
            var given = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        {
            given["size"] = ["shortest_edge": imageSize]
            given["crop_size"] = ["height": imageSize, "width": imageSize]
            preprocessor = given
        }
        try JSONSerialization.data(withJSONObject: preprocessor, options: [.prettyPrinted, .sortedKeys])
            .write(to: output.appendingPathComponent("preprocessor_config.json"), options: .atomic)
        return result
    }
}
