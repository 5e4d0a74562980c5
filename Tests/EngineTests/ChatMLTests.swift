import Engine
import Foundation
import Testing
import TestSupport
import TokenReduction
import Tokenizer

/// ChatML beside Vicuna: rendering as the ChatML chat templates render, the template a
/// checkpoint's own chat template calls for, and SmolLM2-135M-Instruct end to end on its real
/// weights when `tools/smollm2/make_checkpoint.py` has written it (its tokenizer:
/// ByteLevelTokenizerTests).
@Suite struct ChatMLTests {
    @Test func chatMLRendersAsTheChatTemplatesDo() {
        let template = ConversationTemplate.chatML.replacingSystemPrompt("You are a helpful assistant.")
        let turns = [ConversationTurn(role: .human, value: "Hi"), ConversationTurn(role: .gpt, value: "Hello!"),
                     ConversationTurn(role: .human, value: "<image>\nWhat is it?")]
        let rendered = template.render(turns, addGenerationPrompt: true)
        #expect(rendered.text == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            + "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n")
        // Training: the answer's span is its content and <|im_end|>.
        #expect(rendered.answerPrefixes.count == 1)
        let (start, end) = rendered.answerPrefixes[0]
        #expect(rendered.text.hasPrefix(end) && end.hasPrefix(start) && String(end.dropFirst(start.count)) == "Hello!<|im_end|>")
        #expect(ConversationTemplate.chatML.prompt(question: "Hi", images: 0) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    @Test func theCheckpointsChatTemplateChoosesTheFormatAndItsDefaultSystemTurn() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatml-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(ConversationTemplate.forCheckpoint(directory) == .llava15)  // no chat template

        // SmolLM2's (as transformers 5 saves it, chat_template.jinja): the system turn inside a string literal.
        let smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        try Data(smol.utf8).write(to: directory.appendingPathComponent("chat_template.jinja"))
        let fromJinja = ConversationTemplate.forCheckpoint(directory)
        #expect(fromJinja.format == .chatML && fromJinja.systemPrompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        try FileManager.default.removeItem(at: directory.appendingPathComponent("chat_template.jinja"))

        // Qwen2's (tokenizer_config.json): the system turn as template text, jinja's \n escaped in JSON.
        let qwen = #"{"chat_template": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"}"#
        try Data(qwen.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        #expect(ConversationTemplate.forCheckpoint(directory) == ConversationTemplate.chatML.replacingSystemPrompt("You are a helpful assistant."))

        // A ChatML template that writes no default system turn; then llava-hf's (not ChatML).
        let bare = #"{"chat_template": [{"name": "default", "template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}{% endfor %}"}]}"#
        try Data(bare.utf8).write(to: directory.appendingPathComponent("tokenizer_config.json"))
        #expect(ConversationTemplate.forCheckpoint(directory) == .chatML)
        let llava = #"{"chat_template": "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}{% endfor %}"}"#
        try Data(llava.utf8).write(to: directory.appendingPathComponent("chat_template.json"))
        try FileManager.default.removeItem(at: directory.appendingPathComponent("tokenizer_config.json"))
        #expect(ConversationTemplate.forCheckpoint(directory) == .llava15)
    }

    // MARK: - SmolLM2-135M-Instruct, real weights

    static let smolLM2 = Fixtures.repositoryRoot.appendingPathComponent(".build/smollm2-135m")
    static var hasSmolLM2: Bool { FileManager.default.fileExists(atPath: smolLM2.appendingPathComponent("reference.json").path) }

    struct Reference: Decodable {
        struct Message: Decodable { let role: String, content: String }
        let messages: [Message]
        let prompt_ids: [Int]
        let last_logits: [Float]
        let greedy_ids: [Int]
        let greedy_text: String
    }

    /// The prompt through the checkpoint's template and tokenizer, the last prompt position's
    /// logits within 1e-4 of the largest, and 32 greedy tokens, all as transformers gives them on
    /// the same weights (`tools/smollm2/make_checkpoint.py` writes both).
    @Test(.enabled(if: hasSmolLM2, "run tools/smollm2/make_checkpoint.py first"))
    func smolLM2AnswersAsTransformersDoes() throws {
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Self.smolLM2.appendingPathComponent("reference.json")))
        let session = try InferenceSession(directory: Self.smolLM2)
        #expect(session.template.format == .chatML)
        let messages = reference.messages.map { ChatMessage(role: $0.role == "user" ? .user : .assistant, parts: [.text($0.content)]) }
        let prompt = try session.prepare(.messages(messages))
        #expect(prompt.inputIds == reference.prompt_ids)

        let result = try session.generate(prompt, reducer: NoReduction(), maxNewTokens: reference.greedy_ids.count, stopAtEndOfSequence: false)
        let largest = reference.last_logits.map(abs).max() ?? 1
        let difference = zip(result.lastPromptLogits, reference.last_logits).map { abs($0 - $1) }.max() ?? .infinity
        #expect(result.lastPromptLogits.count == reference.last_logits.count)
        #expect(difference <= 1e-4 * largest, "largest logit difference \(difference), largest logit \(largest)")
        #expect(result.tokens == reference.greedy_ids, "ours: \(result.text ?? "")\ntransformers: \(reference.greedy_text)")
    }
}
