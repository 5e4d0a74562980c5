import Foundation

extension LlamaModel {
    /// Qwen2 (`Qwen2ForCausalLM`, model_type qwen2): LLaMA's decoder with biases on the query,
    /// key and value projections and none on the output projection, read with `Qwen2Config`'s
    /// defaults (`Qwen2TextConfiguration`).
    public static let qwen2Family = textFamily(name: "Qwen2", modelTypes: ["qwen2"], architectures: ["Qwen2ForCausalLM"]) { data, file in
        try decodeConfiguration(
            Qwen2TextConfiguration.self, from: data, file: file, userInfo: [LlamaConfiguration.defaultsKey: LlamaConfiguration.qwen2Defaults]
        ).checked(file: file)
    }
}

/// A Qwen2 decoder's config (Qwen2's own, or the text part of Qwen2-VL's) as read, before the
/// checks: LLaMA's keys with the defaults the decoder's `userInfo` gives, and whether it asks for
/// sliding-window attention.
struct Qwen2TextConfiguration: Decodable {
    let llama: LlamaConfiguration
    let useSlidingWindow: Bool?
    let layerTypes: [String]?
    /// Whether the file says `tie_word_embeddings` itself (transformers 5 keeps Qwen2-VL's at the top level).
    let statesTying: Bool

    enum CodingKeys: String, CodingKey {
        case useSlidingWindow = "use_sliding_window", layerTypes = "layer_types", tieWordEmbeddings = "tie_word_embeddings"
    }

    init(from decoder: Decoder) throws {
        llama = try LlamaConfiguration(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        useSlidingWindow = try c.decodeIfPresent(Bool.self, forKey: .useSlidingWindow)
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        statesTying = c.contains(.tieWordEmbeddings)
    }

    /// The decoder's configuration: biases on q/k/v and none on o. Sliding-window attention (`use_sliding_window`,
    /// or a `sliding_attention` entry in `layer_types`) is refused: every released Qwen2 checkpoint attends over the
    /// full context. `keyPrefix` is "text_config." for a nested config.
    func checked(file: String, keyPrefix: String = "") throws -> LlamaConfiguration {
        if useSlidingWindow == true {
            throw ConfigurationError.invalidValue(
                file: file, key: keyPrefix + "use_sliding_window", reason: "sliding-window attention is not supported; only full attention")
        }
        if let kind = layerTypes?.first(where: { $0 != "full_attention" }) {
            throw ConfigurationError.invalidValue(
                file: file, key: keyPrefix + "layer_types", reason: "'\(kind)' layers are not supported; only 'full_attention'")
        }
        var configuration = llama
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
