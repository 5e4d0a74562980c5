/// Problems with what a request asked of a checkpoint, each naming what is wrong. They speak of
/// the request (the prompt, the image, the options); the command line maps them to its flags.
public enum PipelineError: Error, Equatable, CustomStringConvertible {
    case missingFile(directory: String, expected: [String])
    case notAVisionLanguageModel(directory: String)
    case promptWithoutImage(prompt: String)
    case promptWithSeveralImages(count: Int, images: Int)
    case promptTooLong(tokens: Int, imageTokens: Int, context: Int)
    case imageSizeMismatch(file: String, width: Int, height: Int, expected: Int)
    case noGridResolution(file: String, maxTiles: Int)
    case maxTilesWithoutAnyres(directory: String)
    case padToSquareWithAnyres(directory: String)
    case keptPictureNeedsSingleTile(directory: String)
    case noTokenizer(directory: String)
    case imageTokenIsSpecial(directory: String, token: Int)
    case padToSquareWithDynamicResolution(directory: String)
    case processorDisagrees(directory: String, reason: String)
    case imageUnusable(source: String, reason: String)
    case needsLlava(directory: String, family: String, purpose: String)

    public var description: String {
        switch self {
        case let .missingFile(directory, expected):
            return "\(directory): no \(expected.joined(separator: " or ")) in the checkpoint directory"
        case let .notAVisionLanguageModel(directory):
            return "\(directory): config.json describes a text-only model; images need a vision-language checkpoint such as LLaVA"
        case let .promptWithoutImage(prompt):
            return "the prompt has no <image> placeholder: \(prompt.debugDescription)"
        case let .promptWithSeveralImages(count, images):
            return "the prompt has \(count) <image> placeholders but \(images) image\(images == 1 ? " was" : "s were") given"
        case let .imageSizeMismatch(file, width, height, expected):
            return "\(file) was processed to \(width)x\(height) but the vision tower takes \(expected)x\(expected) (check crop_size in the processor config)"
        case let .noGridResolution(file, maxTiles):
            return "\(file): no image_grid_pinpoints resolution has at most \(maxTiles) tiles"
        case let .maxTilesWithoutAnyres(directory):
            return "\(directory): a tile limit applies to LLaVA-NeXT checkpoints (anyres tiles); this one takes one tile per image"
        case let .padToSquareWithAnyres(directory):
            return "\(directory): padding to a square is LLaVA-1.5's preprocessing; LLaVA-NeXT resizes and pads into its grid resolution"
        case let .keptPictureNeedsSingleTile(directory):
            return "\(directory): the kept-token picture draws LLaVA-1.5's single 336-pixel view; LLaVA-NeXT's anyres block is not drawn yet (keptImageTokens in JSON gives it)"
        case let .promptTooLong(tokens, imageTokens, context):
            return "the prompt is \(tokens) tokens (\(imageTokens) of them image tokens), longer than the model's context of \(context)"
        case let .imageTokenIsSpecial(directory, token):
            return "\(directory): config.json's image_token_index \(token) is a special token the tokenizer adds itself "
                + "(BOS or EOS), so every prompt would get an image there; it should be the id of <image> in tokenizer.json"
        case let .padToSquareWithDynamicResolution(directory):
            return "\(directory): padding to a square is LLaVA-1.5's preprocessing; Qwen2-VL takes each image at its own aspect ratio"
        case let .processorDisagrees(directory, reason):
            return "\(directory): \(reason)"
        case let .imageUnusable(source, reason):
            return "\(source): cannot preprocess the image: \(reason)"
        case let .needsLlava(directory, family, purpose):
            return "\(directory): \(purpose) takes LLaVA-family checkpoints (LLaVA-1.5, LLaVA-NeXT) so far; this one is \(family)"
        case let .noTokenizer(directory):
            return "\(directory): no tokenizer.json, so text cannot be encoded; give token ids instead"
        }
    }
}
