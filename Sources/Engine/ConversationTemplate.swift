import Foundation

/// One turn of a LLaVA conversation, as LLaVA's data files name the speakers.
public struct ConversationTurn: Equatable, Sendable {
    public enum Role: String, Sendable {
        case human, gpt
    }

    public let role: Role
    public let value: String

    public init(role: Role, value: String) {
        self.role = role
        self.value = value
    }
}

/// How a conversation becomes the model's text, in one of two formats: LLaVA's `conv_vicuna_v1`
/// (`USER: … ASSISTANT: …</s>`, with or without its system prompt) and ChatML
/// (`<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n…<|im_end|>`: Qwen2, SmolLM2). One
/// definition for inference (the prompt ends where the answer begins) and training (every answer
/// followed by its end marker, its span learned).
public struct ConversationTemplate: Equatable, Sendable {
    public enum Format: String, Sendable {
        case vicuna, chatML
    }

    public let name: String
    public let format: Format
    /// Text before the first turn (vicuna: followed by one space; ChatML: a system turn); nil for none.
    public let systemPrompt: String?

    public init(name: String, format: Format = .vicuna, systemPrompt: String?) {
        self.name = name
        self.format = format
        self.systemPrompt = systemPrompt
    }

    /// Where an image goes in a turn's text; the tokenizer makes it the image token.
    public static let imagePlaceholder = "<image>"
    static let endOfAnswer = "</s>"
    static let chatMLStart = "<|im_start|>", chatMLEnd = "<|im_end|>"

    /// LLaVA's training conversations (`conv_vicuna_v1`, LLaVA-1.5's fine-tuning): the Vicuna
    /// system prompt first.
    public static let vicunaV1 = ConversationTemplate(
        name: "vicuna_v1",
        systemPrompt: "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
    /// llava-hf's chat template of LLaVA-1.5 (and LLaVA-NeXT-Vicuna): the same turns, no system prompt.
    public static let llava15 = ConversationTemplate(name: "llava_1.5", systemPrompt: nil)
    /// ChatML without a system turn (a checkpoint's template supplies its default one: see
    /// `forCheckpoint`).
    public static let chatML = ConversationTemplate(name: "chatml", format: .chatML, systemPrompt: nil)

    public static let all = [llava15, vicunaV1, chatML]

    /// The same turns after `systemPrompt` (a chat request's system message).
    public func replacingSystemPrompt(_ systemPrompt: String?) -> ConversationTemplate {
        ConversationTemplate(name: name, format: format, systemPrompt: systemPrompt)
    }

    /// The template called `name` ("llava_1.5", "vicuna_v1" or "chatml"), nil if there is none.
    public static func named(_ name: String) -> ConversationTemplate? { all.first { $0.name == name } }

    /// The text of a conversation and, for each answer, the text up to where the answer begins
    /// and up to right after its end marker (exact prefixes of `text`, scalar for scalar).
    /// `addGenerationPrompt` ends the text where the model's answer begins.
    public func render(_ turns: [ConversationTurn], addGenerationPrompt: Bool = false)
        -> (text: String, answerPrefixes: [(start: String, end: String)])
    {
        switch format {
        case .vicuna: return renderVicuna(turns, addGenerationPrompt: addGenerationPrompt)
        case .chatML: return renderChatML(turns, addGenerationPrompt: addGenerationPrompt)
        }
    }

    private func renderVicuna(_ turns: [ConversationTurn], addGenerationPrompt: Bool)
        -> (text: String, answerPrefixes: [(start: String, end: String)])
    {
        var text = systemPrompt.map { $0 + " " } ?? ""
        var prefixes: [(start: String, end: String)] = []
        for turn in turns {
            switch turn.role {
            case .human:
                // conv_vicuna_v1's get_prompt: role + ": " + message + sep (" ").
                text += "USER: " + turn.value + " "
            case .gpt:
                text += "ASSISTANT:"
                let start = text
                text += " " + turn.value + Self.endOfAnswer
                prefixes.append((start, text))
            }
        }
        if addGenerationPrompt { text += "ASSISTANT:" }
        return (text, prefixes)
    }

    /// As the ChatML chat templates render: `<|im_start|>{role}\n{content}<|im_end|>\n` per
    /// turn, the system turn first when there is a system prompt; an answer's span is its
    /// content and `<|im_end|>` (the newline after it is not learned).
    private func renderChatML(_ turns: [ConversationTurn], addGenerationPrompt: Bool)
        -> (text: String, answerPrefixes: [(start: String, end: String)])
    {
        func open(_ role: String) -> String { Self.chatMLStart + role + "\n" }
        var text = systemPrompt.map { open("system") + $0 + Self.chatMLEnd + "\n" } ?? ""
        var prefixes: [(start: String, end: String)] = []
        for turn in turns {
            switch turn.role {
            case .human:
                text += open("user") + turn.value + Self.chatMLEnd + "\n"
            case .gpt:
                text += open("assistant")
                let start = text
                text += turn.value + Self.chatMLEnd
                prefixes.append((start, text))
                text += "\n"
            }
        }
        if addGenerationPrompt { text += open("assistant") }
        return (text, prefixes)
    }

    /// The prompt of one question about one image: `USER: <image>\n{question} ASSISTANT:`
    /// (with llava_1.5), as llava-hf's processor renders it.
    public func prompt(question: String, images: Int = 1) -> String {
        let placeholders = String(repeating: Self.imagePlaceholder + "\n", count: images)
        return render([ConversationTurn(role: .human, value: placeholders + question)], addGenerationPrompt: true).text
    }
}

extension ConversationTemplate {
    /// The template a checkpoint's own chat template (tokenizer_config.json's `chat_template`,
    /// chat_template.jinja or chat_template.json, as transformers saves it) calls for: ChatML,
    /// with the default system turn the template writes when a conversation has none (SmolLM2's,
    /// Qwen2's "You are a helpful assistant."), when it uses `<|im_start|>`; otherwise llava-hf's
    /// LLaVA-1.5 conversation.
    public static func forCheckpoint(_ directory: URL) -> ConversationTemplate {
        guard let source = chatTemplateSource(directory), source.contains(chatMLStart) else { return .llava15 }
        return chatML.replacingSystemPrompt(defaultChatMLSystemPrompt(source))
    }

    /// The system text in `<|im_start|>system\n…<|im_end|>` written literally in the template
    /// (the newline as a character or as jinja's `\n`); nil when it writes none.
    static func defaultChatMLSystemPrompt(_ source: String) -> String? {
        for opening in [chatMLStart + "system\n", chatMLStart + "system\\n"] {
            guard let start = source.range(of: opening), let end = source.range(of: chatMLEnd, range: start.upperBound..<source.endIndex)
            else { continue }
            let text = String(source[start.upperBound..<end.lowerBound])
            // A template that inserts the system message itself ({{ ... }}) has no default.
            if text.contains("{{") || text.contains("{%") || text.contains("' +") || text.contains("+ '") { return nil }
            return text
        }
        return nil
    }

    /// The chat template's jinja source, where the checkpoint has one.
    static func chatTemplateSource(_ directory: URL) -> String? {
        if let text = try? String(contentsOf: directory.appendingPathComponent("chat_template.jinja"), encoding: .utf8) { return text }
        for file in ["tokenizer_config.json", "chat_template.json"] {
            guard let data = try? Data(contentsOf: directory.appendingPathComponent(file)),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { continue }
            if let text = object["chat_template"] as? String { return text }
            // Several named templates: [{"name": "default", "template": "..."}, ...].
            if let named = object["chat_template"] as? [[String: Any]] {
                let chosen = named.first { $0["name"] as? String == "default" } ?? named.first
                if let text = chosen?["template"] as? String { return text }
            }
        }
        return nil
    }
}
