import Foundation
import SafeTensors
import TensorCore

/// A checkpoint directory's configuration and the models inside it.
public struct LoadedModel {
    public let configuration: ModelConfiguration
    public let checkpoint: Checkpoint
    /// The decoder (for LLaVA, the same object as `llava.languageModel`).
    public let languageModel: LlamaModel
    /// The whole LLaVA model when the checkpoint is one.
    public let llava: LlavaModel?
    public let languageLayout: LanguageModelLayout
    /// The LLaVA layout the checkpoint was found in (nil for a text-only model).
    public var llavaLayout: LlavaLayout? = nil
    /// With `copiesToFloat32`: every tensor the models use, as mutable fp32, by checkpoint name.
    public var float32Tensors: [String: Tensor] = [:]

    /// Reads config.json and the safetensors of `directory` (`LlamaForCausalLM` or a llava-hf
    /// `LlavaForConditionalGeneration`, in any of the layouts users hold) and loads every
    /// tensor, reporting all missing, unexpected or mis-shaped ones at once. `copiesToFloat32`
    /// gives every tensor an fp32 copy of its own (for training) instead of borrowing the files.
    public static func load(directory: URL, copiesToFloat32: Bool = false) throws -> LoadedModel {
        let configuration = try ModelConfiguration.load(from: directory.appendingPathComponent("config.json"))
        let checkpoint = try Checkpoint(directory: directory)
        let loader = WeightLoader(checkpoint: checkpoint, copiesToFloat32: copiesToFloat32)
        switch configuration {
        case let .llama(text):
            let model = LlamaModel(configuration: text, loader: loader, layout: .llama)
            try loader.finish(ownedPrefixes: [LanguageModelLayout.llama.modelPrefix, LanguageModelLayout.llama.lmHeadPrefix])
            var loaded = LoadedModel(configuration: configuration, checkpoint: checkpoint, languageModel: model, llava: nil, languageLayout: .llama)
            loaded.float32Tensors = loader.float32Tensors
            return loaded
        case let .llava(llavaConfiguration):
            let layout = LlavaLayout.detect(in: checkpoint)
            let model = LlavaModel(configuration: llavaConfiguration, loader: loader, layout: layout)
            try loader.finish(ownedPrefixes: layout.ownedPrefixes)
            var loaded = LoadedModel(
                configuration: configuration, checkpoint: checkpoint, languageModel: model.languageModel, llava: model,
                languageLayout: layout.language)
            loaded.llavaLayout = layout
            loaded.float32Tensors = loader.float32Tensors
            return loaded
        }
    }
}
