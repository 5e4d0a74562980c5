import Foundation
import SafeTensors

/// A checkpoint directory's configuration and the language model inside it.
public struct LoadedLanguageModel {
    public let configuration: ModelConfiguration
    public let layout: LanguageModelLayout
    public let model: LlamaModel
    public let checkpoint: Checkpoint

    /// Reads config.json and the safetensors of `directory` (a `LlamaForCausalLM` or a llava-hf
    /// `LlavaForConditionalGeneration`) and loads the language model, checking every tensor.
    public static func load(directory: URL) throws -> LoadedLanguageModel {
        let configuration = try ModelConfiguration.load(from: directory.appendingPathComponent("config.json"))
        let checkpoint = try Checkpoint(directory: directory)
        let layout: LanguageModelLayout
        switch configuration {
        case .llama: layout = .llama
        case .llava:
            layout = LanguageModelLayout.detect(in: checkpoint) ?? .llavaHub
        }
        let loader = WeightLoader(checkpoint: checkpoint)
        let model = LlamaModel(configuration: configuration.text, loader: loader, layout: layout)
        try loader.finish(ownedPrefixes: [layout.modelPrefix, layout.lmHeadPrefix])
        return LoadedLanguageModel(configuration: configuration, layout: layout, model: model, checkpoint: checkpoint)
    }
}
