import Foundation
import SafeTensors
import TensorCore

// MARK: - Families

/// What a family gives the loader: its decoder, the vision-language model when it is one, and
/// where its tensors live.
public struct BuiltModel {
    public let decoder: any LanguageDecoder
    public let visionLanguageModel: (any VisionLanguageModel)?
    /// Every checkpoint tensor under these prefixes must be used.
    public let ownedPrefixes: [String]
    public let languageLayout: LanguageModelLayout
    /// LLaVA-style families: where the vision tower, projector and newline live.
    public let llavaLayout: LlavaLayout?

    public init(
        decoder: any LanguageDecoder, visionLanguageModel: (any VisionLanguageModel)?, ownedPrefixes: [String],
        languageLayout: LanguageModelLayout, llavaLayout: LlavaLayout? = nil
    ) {
        self.decoder = decoder
        self.visionLanguageModel = visionLanguageModel
        self.ownedPrefixes = ownedPrefixes
        self.languageLayout = languageLayout
        self.llavaLayout = llavaLayout
    }
}

/// A family of checkpoints the engine runs (MLXVLM's type registry entry; llama.cpp's
/// architecture): the config.json `model_type` and `architectures` it answers to, how its
/// configuration is read and checked, and how its model is built from the tensors.
public struct ModelFamily: Sendable {
    public let name: String
    public let modelTypes: [String]
    public let architectures: [String]
    /// Whether its config.json carries `image_grid_pinpoints` (written back when saving).
    public let usesGridPinpoints: Bool
    /// config.json's bytes (`file` names it in errors, `modelType` is the resolved type) to its
    /// validated configuration.
    public let parse: @Sendable (_ data: Data, _ file: String) throws -> ModelConfiguration
    /// The model over `source`'s tensors.
    public let build: @Sendable (_ configuration: ModelConfiguration, _ checkpoint: Checkpoint?, _ source: WeightSource) throws -> BuiltModel

    public init(
        name: String, modelTypes: [String], architectures: [String], usesGridPinpoints: Bool = false,
        parse: @escaping @Sendable (Data, String) throws -> ModelConfiguration,
        build: @escaping @Sendable (ModelConfiguration, Checkpoint?, WeightSource) throws -> BuiltModel
    ) {
        self.name = name
        self.modelTypes = modelTypes
        self.architectures = architectures
        self.usesGridPinpoints = usesGridPinpoints
        self.parse = parse
        self.build = build
    }

    /// A family with LLaVA's configuration schema and weight layouts whose model is `model` (a
    /// `LlavaModel` subclass overriding how images become features).
    public static func llavaStyle(
        name: String, modelTypes: [String], architectures: [String], model: LlavaModel.Type, usesGridPinpoints: Bool = false
    ) -> ModelFamily {
        ModelFamily(
            name: name, modelTypes: modelTypes, architectures: architectures, usesGridPinpoints: usesGridPinpoints,
            parse: { data, file in
                var configuration = try decodeConfiguration(LlavaConfiguration.self, from: data, file: file)
                // config.json may name the family by its architecture alone.
                if !modelTypes.contains(configuration.modelType) { configuration.modelType = modelTypes[0] }
                try configuration.validate(file: file)
                try model.validate(configuration, file: file)
                return .llava(configuration)
            },
            build: { configuration, checkpoint, source in
                guard case let .llava(llava) = configuration else { throw FamilyMismatchError(family: name) }
                let layout = checkpoint.map(LlavaLayout.detect) ?? .hub
                try llava.textConfig.checkSizes(against: checkpoint, layout: layout.language, keyPrefix: "text_config.")
                try llava.visionConfig.checkSizes(against: checkpoint, prefix: layout.visionPrefix, keyPrefix: "vision_config.")
                let built = model.init(configuration: llava, loader: source, layout: layout)
                return BuiltModel(
                    decoder: built.languageModel, visionLanguageModel: built, ownedPrefixes: layout.ownedPrefixes,
                    languageLayout: layout.language, llavaLayout: layout)
            })
    }
}

/// A configuration handed to a family that does not read that schema (a programming error in a
/// registration, reported instead of trapping).
public struct FamilyMismatchError: Error, CustomStringConvertible {
    public let family: String
    public var description: String { "the \(family) family was given another family's configuration" }
}

/// The families the engine knows, looked up by config.json's `model_type` (or, without one, its
/// first `architectures` entry; a file with neither is a LLaMA, as transformers' default).
public enum ModelRegistry {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var registered: [ModelFamily] = [LlamaModel.family, LlamaModel.qwen2Family, LlavaModel.family, LlavaNextModel.nextFamily, Qwen2VLModel.family, Qwen2VLModel.qwen25Family]

    public static var families: [ModelFamily] { lock.withLock { registered } }

    /// Adds a family (or replaces one that answers to the same model types).
    public static func register(_ family: ModelFamily) {
        lock.withLock {
            registered.removeAll { !Set($0.modelTypes).isDisjoint(with: family.modelTypes) }
            registered.append(family)
        }
    }

    public static func family(modelType: String, file: String = "config.json") throws -> ModelFamily {
        let families = self.families
        guard let family = families.first(where: { $0.modelTypes.contains(modelType) }) else {
            throw ConfigurationError.unsupportedModelType(file: file, modelType: modelType, supported: families.flatMap(\.modelTypes))
        }
        return family
    }

    /// The family config.json's bytes describe.
    public static func family(forConfiguration data: Data, file: String) throws -> ModelFamily {
        struct Kind: Decodable {
            let modelType: String?
            let architectures: [String]?
            enum CodingKeys: String, CodingKey { case modelType = "model_type", architectures }
        }
        let kind = try decodeConfiguration(Kind.self, from: data, file: file)
        if let modelType = kind.modelType { return try family(modelType: modelType, file: file) }
        if let architecture = kind.architectures?.first, let family = families.first(where: { $0.architectures.contains(architecture) }) {
            return family
        }
        return try family(modelType: LlamaModel.family.modelTypes[0], file: file)
    }
}

// MARK: - Loading

/// A checkpoint directory's configuration and the model inside it.
public struct LoadedModel {
    public let configuration: ModelConfiguration
    public let checkpoint: Checkpoint
    public let family: ModelFamily
    public let decoder: any LanguageDecoder
    /// The whole vision-language model when the checkpoint is one.
    public let visionLanguageModel: (any VisionLanguageModel)?
    public let languageLayout: LanguageModelLayout
    /// The LLaVA layout the checkpoint was found in (nil for other families).
    public let llavaLayout: LlavaLayout?
    /// With `copiesToFloat32`: every tensor the model uses, as mutable fp32, by checkpoint name.
    public let float32Tensors: [String: Tensor]

    /// The decoder when it is LLaMA's (every family here so far).
    public var llama: LlamaModel? { decoder as? LlamaModel }
    /// The model when it is a LLaVA-style one (LLaVA-1.5, LLaVA-NeXT and their subclasses).
    public var llava: LlavaModel? { visionLanguageModel as? LlavaModel }

    /// Reads config.json and the safetensors of `directory`, builds the model of the family the
    /// registry picks, and loads every tensor, reporting all missing, unexpected or mis-shaped
    /// ones at once. `copiesToFloat32` gives every tensor an fp32 copy of its own (for training)
    /// instead of borrowing the files.
    public static func load(directory: URL, copiesToFloat32: Bool = false) throws -> LoadedModel {
        let configurationURL = directory.appendingPathComponent("config.json")
        let data = try readConfigurationFile(configurationURL)
        let family = try ModelRegistry.family(forConfiguration: data, file: configurationURL.path)
        let configuration = try family.parse(data, configurationURL.path)
        let checkpoint = try Checkpoint(directory: directory)
        let loader = WeightLoader(checkpoint: checkpoint, copiesToFloat32: copiesToFloat32)
        let built = try family.build(configuration, checkpoint, loader)
        try loader.finish(ownedPrefixes: built.ownedPrefixes)
        return LoadedModel(
            configuration: configuration, checkpoint: checkpoint, family: family, decoder: built.decoder,
            visionLanguageModel: built.visionLanguageModel, languageLayout: built.languageLayout, llavaLayout: built.llavaLayout,
            float32Tensors: loader.float32Tensors)
    }
}
