import ArgumentParser
import Engine
import Foundation
import Models
import TensorCore
import TokenReduction

/// What `--template` means when not given, for every command that takes it.
let templateDefaultHelp = " Default: what the checkpoint's chat template calls for (chatml when it uses <|im_start|>, else llava_1.5)."

/// The model and the prompt, shared by generate and logits.
struct InputOptions: ParsableArguments {
    @Option(help: "Checkpoint directory (config.json, *.safetensors, tokenizer.json, preprocessor_config.json).")
    var model: String

    @Option(name: .long, help: "Image file (PNG or JPEG); repeat for prompts with several <image>.")
    var image: [String] = []

    @Option(help: "A question, wrapped in the conversation template (see --template), after the --image files if any (each on a line of its own, as llava-hf's chat template puts them).")
    var prompt: String?

    @Option(help: "The prompt exactly as given; it must hold one <image> per --image.")
    var rawPrompt: String?

    @Option(help: "Prompt token ids, comma-separated, for text-only checkpoints (e.g. 1,450,4996).")
    var promptIds: String?

    @Option(help: "Conversation template for --prompt: \(ConversationTemplate.all.map(\.name).joined(separator: ", ")).\(templateDefaultHelp)")
    var template: String?

    @Flag(help: "Pad the image to a square with the mean colour first (LLaVA's original preprocessing).")
    var padToSquare = false

    @Option(help: "LLaVA-NeXT: use only grid resolutions of at most this many tiles (besides the base image), e.g. 4 or 8.")
    var maxTiles: Int?

    func validate() throws {
        let given = [prompt != nil, rawPrompt != nil, promptIds != nil].filter { $0 }.count
        if given != 1 { throw ValidationError("give exactly one of --prompt, --raw-prompt and --prompt-ids") }
        if promptIds != nil && !image.isEmpty { throw ValidationError("--prompt-ids takes no --image; use --prompt or --raw-prompt") }
        if let maxTiles, maxTiles < 1 { throw ValidationError("--max-tiles must be at least 1, got \(maxTiles)") }
        if let template, ConversationTemplate.named(template) == nil {
            throw ValidationError("--template '\(template)' is unknown; choose from \(ConversationTemplate.all.map(\.name).joined(separator: ", "))")
        }
    }

    /// The loaded checkpoint and the request prepared on it (images through the tower).
    func prepare() throws -> (session: InferenceSession, prompt: PreparedPrompt) {
        try withFlagNames {
            let session = try InferenceSession(
                directory: URL(fileURLWithPath: model), imageOptions: ImageProcessingOptions(padToSquare: padToSquare, maxTiles: maxTiles),
                template: template.flatMap(ConversationTemplate.named))
            let images = image.map { ImageSource.file(URL(fileURLWithPath: $0)) }
            let input: PromptInput
            if let promptIds {
                input = .tokenIds(try parseList(promptIds, flag: "--prompt-ids") { Int($0).flatMap { $0 >= 0 ? $0 : nil } })
            } else if let prompt {
                input = .messages([ChatMessage(role: .user, parts: images.map { .image($0) } + [.text(prompt)])])
            } else {
                input = .raw(rawPrompt ?? "", images: images)
            }
            return (session, try session.prepare(input))
        }
    }
}

/// Runs `body`, naming the command-line flag behind a request error the Engine reports.
func withFlagNames<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as PipelineError {
        let flag: String
        switch error {
        case .noGridResolution, .maxTilesWithoutAnyres: flag = "--max-tiles"
        case .padToSquareWithAnyres, .padToSquareWithDynamicResolution: flag = "--pad-to-square"
        case .keptPictureNeedsSingleTile: flag = "--save-kept"
        case .notAVisionLanguageModel: flag = "--image"
        case .noTokenizer: flag = "--prompt-ids"
        default: throw error
        }
        throw FlaggedError(flag: flag, underlying: error)
    }
}

/// A request error with the flag that asked for it.
struct FlaggedError: Error, CustomStringConvertible {
    let flag: String
    let underlying: Error
    var description: String { "\(underlying) (\(flag))" }
}

extension InferenceSession {
    /// The reducer the reduction flags describe, for this prompt.
    func reducer(_ options: ReductionOptions, for prompt: PreparedPrompt) throws -> VisualTokenReducer {
        try reducer(try options.request(), for: prompt)
    }
}

/// `keptImageTokens` in JSON: per drop, the sorted indices of the one image's block; with
/// several images, per drop a list per image.
struct KeptImageTokensJSON: Encodable {
    let perDrop: KeptImageTokens
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        if perDrop.allSatisfy({ $0.count == 1 }) {
            try container.encode(perDrop.map { $0[0] })
        } else {
            try container.encode(perDrop)
        }
    }
}
