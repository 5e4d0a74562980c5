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

/// How a conversation becomes the model's text: LLaVA's `conv_vicuna_v1` (`USER: … ASSISTANT: …</s>`),
/// with or without its system prompt. One definition for inference (the prompt ends with
/// `ASSISTANT:`) and training (every answer followed by `</s>`, its span learned).
public struct ConversationTemplate: Equatable, Sendable {
    public let name: String
    /// Text before the first turn, followed by one space; nil for none.
    public let systemPrompt: String?

    /// Where an image goes in a turn's text; the tokenizer makes it the image token.
    public static let imagePlaceholder = "<image>"
    static let endOfAnswer = "</s>"

    /// LLaVA's training conversations (`conv_vicuna_v1`, LLaVA-1.5's fine-tuning): the Vicuna
    /// system prompt first.
    public static let vicunaV1 = ConversationTemplate(
        name: "vicuna_v1",
        systemPrompt: "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
    /// llava-hf's chat template of LLaVA-1.5 (and LLaVA-NeXT-Vicuna): the same turns, no system prompt.
    public static let llava15 = ConversationTemplate(name: "llava_1.5", systemPrompt: nil)

    public static let all = [llava15, vicunaV1]

    /// The same turns after `systemPrompt` (a chat request's system message).
    public func replacingSystemPrompt(_ systemPrompt: String) -> ConversationTemplate {
        ConversationTemplate(name: name, systemPrompt: systemPrompt)
    }

    /// The template called `name` ("llava_1.5" or "vicuna_v1"), nil if there is none.
    public static func named(_ name: String) -> ConversationTemplate? { all.first { $0.name == name } }

    /// The text of a conversation and, for each answer, the text up to right after its
    /// `ASSISTANT:` and up to right after its `</s>` (exact prefixes of `text`, scalar for
    /// scalar). `addGenerationPrompt` ends the text with `ASSISTANT:` for the model to answer.
    public func render(_ turns: [ConversationTurn], addGenerationPrompt: Bool = false)
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

    /// The prompt of one question about one image: `USER: <image>\n{question} ASSISTANT:`
    /// (with llava_1.5), as llava-hf's processor renders it.
    public func prompt(question: String, images: Int = 1) -> String {
        let placeholders = String(repeating: Self.imagePlaceholder + "\n", count: images)
        return render([ConversationTurn(role: .human, value: placeholders + question)], addGenerationPrompt: true).text
    }
}
