import ArgumentParser
import Foundation
import Training

/// `pdrop init`: a LLaVA checkpoint of random weights, initialised as transformers initialises a
/// model built from its config, to train from scratch with `pdrop train --train all`.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a LLaVA checkpoint of randomly initialised weights (transformers' initialisation) from a config.json.",
        discussion: """
            Writes OUTPUT/model.safetensors (llava-hf hub names), config.json, the tokenizer files of --tokenizer and a \
            preprocessor_config.json for vision_config.image_size (--tokenizer's with its sizes replaced, else CLIP's). LLaMA and \
            projector weights ~ normal(0, initializer_range), CLIP's by CLIPPreTrainedModel._init_weights, norms 1, \
            biases 0. The same --seed gives the same bytes. OUTPUT must be absent or empty.
            """)

    @Option(help: "A llava-hf config.json (model_type llava, text_config, vision_config).")
    var config: String

    @Option(help: "Folder with tokenizer.json (and tokenizer_config.json, special_tokens_map.json) to copy.")
    var tokenizer: String

    @Option(help: "The checkpoint folder to create (absent or empty).")
    var output: String

    @Option(help: "Seed of the random weights.")
    var seed: UInt64 = 0

    @Option(help: "Stored type of the weights: float32 or bfloat16.")
    var dtype: String = "float32"

    @Option(help: "The vision tower's position embedding: normal (transformers' normal(0, 0.02)) or sincos (MAE's 2-D sine-cosine table, learnable; for training from scratch).")
    var visionPositions: String = "normal"

    func validate() throws {
        if InitializationRules.VisionPositions(rawValue: visionPositions) == nil {
            throw ValidationError("--vision-positions must be normal or sincos, not \(visionPositions)")
        }
        if !["float32", "bfloat16"].contains(dtype) { throw ValidationError("--dtype must be float32 or bfloat16, not \(dtype)") }
    }

    func run() throws {
        try failing {
            let result = try ModelInitialization.write(
                configuration: URL(fileURLWithPath: config), tokenizer: URL(fileURLWithPath: tokenizer), output: URL(fileURLWithPath: output),
                seed: seed, dtype: dtype, visionPositions: InitializationRules.VisionPositions(rawValue: visionPositions)!)
            let parameters = result.tensors.values.reduce(0) { $0 + $1.count }
            print("wrote \(result.tensors.count) tensors (\(parameters) parameters, \(dtype), seed \(seed)) to \(output)")
        }
    }
}
