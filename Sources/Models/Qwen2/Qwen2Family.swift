import Foundation

extension LlamaModel {
    /// Qwen2 (`Qwen2ForCausalLM`, model_type qwen2): LLaMA's decoder with biases on the query,
    /// key and value projections and none on the output projection, read with `Qwen2Config`'s
    /// defaults. Sliding-window attention (`use_sliding_window`, or a `sliding_attention` entry in
    /// `layer_types`) is refused: every released Qwen2 checkpoint attends over the full context.
    public static let qwen2Family = textFamily(name: "Qwen2", modelTypes: ["qwen2"], architectures: ["Qwen2ForCausalLM"]) { data, file in
        struct SlidingWindow: Decodable {
            let useSlidingWindow: Bool?
            let layerTypes: [String]?
            enum CodingKeys: String, CodingKey { case useSlidingWindow = "use_sliding_window", layerTypes = "layer_types" }
        }
        let window = try decodeConfiguration(SlidingWindow.self, from: data, file: file)
        if window.useSlidingWindow == true {
            throw ConfigurationError.invalidValue(file: file, key: "use_sliding_window", reason: "sliding-window attention is not supported; only full attention")
        }
        if let kind = window.layerTypes?.first(where: { $0 != "full_attention" }) {
            throw ConfigurationError.invalidValue(file: file, key: "layer_types", reason: "'\(kind)' layers are not supported; only 'full_attention'")
        }
        var configuration = try decodeConfiguration(
            LlamaConfiguration.self, from: data, file: file, userInfo: [LlamaConfiguration.defaultsKey: LlamaConfiguration.qwen2Defaults])
        configuration.attentionBias = true
        configuration.attentionOutputBias = false
        return configuration
    }
}

extension LlamaConfiguration {
    /// transformers' `Qwen2Config` defaults, for keys a Qwen2 config.json leaves out.
    public static let qwen2Defaults = LlamaConfiguration {
        $0.vocabSize = 151_936
        $0.hiddenSize = 4096
        $0.intermediateSize = 22_016
        $0.maxPositionEmbeddings = 32_768
        $0.rmsNormEps = 1e-6
        $0.bosTokenId = nil
        $0.eosTokenIds = []
    }
}
