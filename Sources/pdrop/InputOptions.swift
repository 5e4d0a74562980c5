import ArgumentParser
import Engine
import Foundation
import Models
import TensorCore
import TokenReduction

/// The model and the prompt, shared by generate and logits.
struct InputOptions: ParsableArguments {
    @Option(help: "Checkpoint directory (config.json, *.safetensors, tokenizer.json, preprocessor_config.json).")
    var model: String

    @Option(name: .long, help: "Image file (PNG or JPEG); repeat for prompts with several <image>.")
    var image: [String] = []

    @Option(help: "A question about the image, wrapped in LLaVA-1.5's conversation format.")
    var prompt: String?

    @Option(help: "The prompt exactly as given; it must hold one <image> per --image.")
    var rawPrompt: String?

    @Option(help: "Prompt token ids, comma-separated, for text-only checkpoints (e.g. 1,450,4996).")
    var promptIds: String?

    @Flag(help: "Pad the image to a square with the mean colour first (LLaVA's original preprocessing).")
    var padToSquare = false

    @Option(help: "LLaVA-NeXT: use only grid resolutions of at most this many tiles (besides the base image), e.g. 4 or 8.")
    var maxTiles: Int?

    func validate() throws {
        let given = [prompt != nil, rawPrompt != nil, promptIds != nil].filter { $0 }.count
        if given != 1 { throw ValidationError("give exactly one of --prompt, --raw-prompt and --prompt-ids") }
        if promptIds != nil && !image.isEmpty { throw ValidationError("--prompt-ids takes no --image; use --prompt or --raw-prompt") }
        if prompt != nil && image.count != 1 { throw ValidationError("--prompt needs exactly one --image (use --raw-prompt for other counts)") }
        if let maxTiles, maxTiles < 1 { throw ValidationError("--max-tiles must be at least 1, got \(maxTiles)") }
    }

    /// What the run needs: the prompt's embeddings, image blocks and ids, for any checkpoint kind.
    func prepare() throws -> PreparedRun {
        let directory = URL(fileURLWithPath: model)
        if let promptIds {
            let ids = try parseList(promptIds, flag: "--prompt-ids") { Int($0).flatMap { $0 >= 0 ? $0 : nil } }
            let loaded = try LoadedModel.load(directory: directory)
            return PreparedRun(
                languageModel: loaded.languageModel, pipeline: nil, inputIds: ids, imageBlocks: [], embeddings: { try loaded.languageModel.embed(ids) },
                visionSeconds: 0, flops: { reducer in
                    FLOPs.prefillReport(
                        decoder: DecoderShape(loaded.languageModel.configuration), vision: nil, tiles: 0, projectorInput: 0,
                        textTokens: ids.count, imageBlockSizes: [], reducer: reducer)
                }, decode: nil, imageFiles: [])
        }
        let pipeline = try LlavaPipeline(directory: directory, padToSquare: padToSquare, maxTiles: maxTiles)
        let text = prompt.map(LlavaPipeline.conversationPrompt(question:)) ?? rawPrompt ?? ""
        let prepared = try pipeline.prepare(prompt: text, imageFiles: image.map { URL(fileURLWithPath: $0) })
        return PreparedRun(
            languageModel: pipeline.languageModel, pipeline: pipeline, inputIds: prepared.inputIds, imageBlocks: prepared.imageBlocks,
            embeddings: { try pipeline.llava.embed(tokens: prepared.inputIds, imageFeatures: prepared.imageFeatures) },
            visionSeconds: prepared.visionSeconds, flops: { pipeline.flops(prepared, reducer: $0) },
            decode: { pipeline.tokenizer.decode($0, skipSpecialTokens: true) }, imageFiles: image.map { URL(fileURLWithPath: $0) })
    }
}

/// A prompt prepared for one checkpoint, with or without images.
struct PreparedRun {
    let languageModel: LlamaModel
    let pipeline: LlavaPipeline?
    let inputIds: [Int]
    let imageBlocks: [Range<Int>]
    /// Fresh input embeddings (the prefill uses them as its working buffer).
    let embeddings: () throws -> Tensor
    let visionSeconds: Double
    let flops: (VisualTokenReducer) -> FLOPsReport
    /// Token ids to text, when there is a tokenizer.
    let decode: (([Int]) -> String)?
    let imageFiles: [URL]

    var imageTokens: Int { imageBlocks.reduce(0) { $0 + $1.count } }

    func reducer(_ options: ReductionOptions) throws -> VisualTokenReducer {
        try options.request().makeReducer(
            decoder: DecoderShape(languageModel.configuration), imageTokens: imageBlocks.first?.count ?? 1)
    }

    func generate(reducer: VisualTokenReducer, maxNewTokens: Int, stopAtEndOfSequence: Bool) throws -> GenerationResult {
        try generateGreedy(
            model: languageModel, promptEmbeddings: embeddings(), imageBlocks: imageBlocks, reducer: reducer,
            maxNewTokens: maxNewTokens, stopAtEndOfSequence: stopAtEndOfSequence)
    }
}

/// `keptImageTokens` in JSON: per drop, the sorted indices of the one image's block; with
/// several images, per drop a list per image.
struct KeptImageTokens: Encodable {
    let perDrop: [[[Int]]]
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        if perDrop.allSatisfy({ $0.count == 1 }) {
            try container.encode(perDrop.map { $0[0] })
        } else {
            try container.encode(perDrop)
        }
    }
}
