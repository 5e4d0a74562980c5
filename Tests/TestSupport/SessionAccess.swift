import Engine
import Models

/// What the parity tests reach into: the LLaVA-family model and LLaMA decoder behind a session
/// (the fixtures are all of these families).
extension InferenceSession {
    public var llava: LlavaModel { loaded.llava! }
    public var languageModel: LlamaModel { loaded.llama! }
}

extension LoadedModel {
    public var languageModel: LlamaModel { llama! }
}
