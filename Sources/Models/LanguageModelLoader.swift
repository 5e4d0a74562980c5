import Foundation
import SafeTensors

/// A checkpoint directory's configuration and the models inside it.
public struct LoadedModel {
    public let configuration: ModelConfiguration
    public let checkpoint: Checkpoint
    /// The decoder (for LLaVA, the same object as `llava.languageModel`).
    public let languageModel: LlamaModel
    /// The whole LLaVA model when the checkpoint is one.
    public let llava: LlavaModel?
    public let languageLayout: LanguageModelLayout

    /// Reads config.json and the safetensors of `directory` (`LlamaForCausalLM` or a llava-hf
    /// `LlavaForConditionalGeneration`, in any of the layouts users hold) and loads every
    /// tensor, reporting all missing, unexpected or mis-shaped ones at once.
    public static func load(directory: URL) throws -> LoadedModel {
        let configuration = try ModelConfiguration.load(from: directory.appendingPathComponent("config.json"))
        let checkpoint = try Checkpoint(directory: directory)
        let loader = WeightLoader(checkpoint: checkpoint)
        switch configuration {
        case let .llama(text):
            let model = LlamaModel(configuration: text, loader: loader, layout: .llama)
            try loader.finish(ownedPrefixes: [LanguageModelLayout.llama.modelPrefix, LanguageModelLayout.llama.lmHeadPrefix])
            return LoadedModel(configuration: configuration, checkpoint: checkpoint, languageModel: model, llava: nil, languageLayout: .llama)
        case let .llava(llavaConfiguration):
            let layout = LlavaLayout.detect(in: checkpoint)
            let model = LlavaModel(configuration: llavaConfiguration, loader: loader, layout: layout)
            try loader.finish(ownedPrefixes: layout.ownedPrefixes)
            return LoadedModel(
                configuration: configuration, checkpoint: checkpoint, languageModel: model.languageModel, llava: model,
                languageLayout: layout.language)
        }
    }
}
