import TokenReduction

/// The shapes of the paper's models, for `pdrop flops` and benchmarks without weights.
public struct ModelPreset: Sendable {
    public let name: String
    public let decoder: DecoderShape
    public let vision: PresetVision
    /// Image tokens of one image: 576 for LLaVA-1.5; the paper's 2880 for LLaVA-NeXT (anyres).
    public let imageTokens: Int
    /// Vision tiles per image (1 for LLaVA-1.5; base + 4 tiles for LLaVA-NeXT).
    public let tiles: Int

    public static let vicuna7B = DecoderShape(layers: 32, hidden: 4096, intermediate: 11008, heads: 32, keyValueHeads: 32, headDim: 128, vocabulary: 32064)
    public static let clipLarge336 = VisionShape(hidden: 1024, intermediate: 4096, heads: 16, layersRun: 23, patchSize: 14, channels: 3, patchesPerTile: 576)

    public static let llava15_7B = ModelPreset(name: "llava-1.5-7b", decoder: vicuna7B, vision: .clip(clipLarge336), imageTokens: 576, tiles: 1)
    public static let llavaNext7B = ModelPreset(name: "llava-next-7b", decoder: vicuna7B, vision: .clip(clipLarge336), imageTokens: 2880, tiles: 5)
    /// Qwen2-VL-7B-Instruct (Qwen2-7B decoder, 675M-parameter tower) on a 1280 × 960 photograph:
    /// `smart_resize` gives 1288 × 952 pixels, 92 × 68 patches, 46 × 34 = 1564 merged tokens.
    public static let qwen2VL7B = ModelPreset(
        name: "qwen2-vl-7b", decoder: qwen2Decoder7B,
        vision: .qwen2VL(Qwen2VLVisionShape(embed: 1280, mlp: 5120, depth: 32, patchDimension: 3 * 2 * 14 * 14, mergeSize: 2),
                         tokenGrid: (rows: 34, columns: 46)),
        imageTokens: 1564, tiles: 1)
    /// Qwen2.5-VL-7B-Instruct on the same photograph: the same decoder shape and token count; its
    /// tower has a gated MLP (3420) and attends in windows of 4 × 4 tokens except in 4 of its 32 blocks.
    public static let qwen25VL7B = ModelPreset(
        name: "qwen2.5-vl-7b", decoder: qwen2Decoder7B,
        vision: .qwen2VL(Qwen2VLVisionShape(embed: 1280, mlp: 3420, depth: 32, patchDimension: 3 * 2 * 14 * 14, mergeSize: 2,
                                            gatedMLP: true, windowTokens: 4, fullAttentionBlocks: 4),
                         tokenGrid: (rows: 34, columns: 46)),
        imageTokens: 1564, tiles: 1)
    public static let qwen2Decoder7B = DecoderShape(
        layers: 28, hidden: 3584, intermediate: 18944, heads: 28, keyValueHeads: 4, headDim: 128, vocabulary: 152_064)
    /// CLIP ViT-L/14-336 with a TinyLlama-1.1B decoder (the shape of tools/bench_pytorch.py's
    /// bench-1b and of llama.cpp comparisons): 576 image tokens; with 40 text tokens, 616.
    public static let llava1B = ModelPreset(
        name: "llava-1b",
        decoder: DecoderShape(layers: 22, hidden: 2048, intermediate: 5632, heads: 32, keyValueHeads: 4, headDim: 64, vocabulary: 32064),
        vision: .clip(clipLarge336), imageTokens: 576, tiles: 1)
    /// A small shape with LLaVA-1.5's token counts, for CI: the same code paths in seconds.
    public static let small = ModelPreset(
        name: "small",
        decoder: DecoderShape(layers: 8, hidden: 256, intermediate: 688, heads: 8, keyValueHeads: 4, headDim: 32, vocabulary: 32064),
        vision: .clip(VisionShape(hidden: 128, intermediate: 512, heads: 4, layersRun: 3, patchSize: 14, channels: 3, patchesPerTile: 576)),
        imageTokens: 576, tiles: 1)
    /// A 270M-parameter LLaVA with LLaVA-NeXT's 2880-token anyres block (5 tiles): fp32 training
    /// (parameters, gradients, Adam moments) fits this machine; for `pdrop bench --train`.
    public static let trainNext = ModelPreset(
        name: "train-next",
        decoder: DecoderShape(layers: 16, hidden: 1024, intermediate: 2816, heads: 16, keyValueHeads: 16, headDim: 64, vocabulary: 32064),
        vision: .clip(VisionShape(hidden: 256, intermediate: 1024, heads: 4, layersRun: 4, patchSize: 14, channels: 3, patchesPerTile: 576)),
        imageTokens: 2880, tiles: 5)
    /// `small`'s decoder with a small Qwen2.5-VL tower on a 24 × 24-token image (576 tokens, as
    /// LLaVA-1.5's): the M-RoPE and window-attention paths in seconds.
    public static let smallQwen25VL = ModelPreset(
        name: "small-qwen2.5-vl",
        decoder: DecoderShape(layers: 8, hidden: 256, intermediate: 688, heads: 8, keyValueHeads: 4, headDim: 32, vocabulary: 32064),
        vision: .qwen2VL(Qwen2VLVisionShape(embed: 128, mlp: 342, depth: 4, patchDimension: 3 * 2 * 14 * 14, mergeSize: 2,
                                            gatedMLP: true, windowTokens: 4, fullAttentionBlocks: 2),
                         tokenGrid: (rows: 24, columns: 24)),
        imageTokens: 576, tiles: 1)
    public static let all = [llava15_7B, llavaNext7B, llava1B, qwen2VL7B, qwen25VL7B, small, smallQwen25VL, trainNext]

    public static func named(_ name: String) -> ModelPreset? { all.first { $0.name == name } }
}

/// A preset's vision side: a CLIP tower run per tile with LLaVA's projector, or Qwen2-VL's tower.
public enum PresetVision: Sendable {
    case clip(VisionShape)
    /// The tower, and the merged tokens (rows, columns) of the preset's image.
    case qwen2VL(Qwen2VLVisionShape, tokenGrid: (rows: Int, columns: Int))
}

extension ModelPreset {
    /// Exact multiply-adds of the vision tower and projector for one image.
    public var exactVisionFLOPs: Double {
        switch vision {
        case let .clip(shape):
            return FLOPs.exactVision(shape: shape, tiles: tiles, imageTokens: imageTokens, projectorInput: shape.hidden, textHidden: decoder.hidden)
        case let .qwen2VL(shape, grid):
            return FLOPs.exactQwen2VLVision(shape: shape, tokenGrids: [grid], textHidden: decoder.hidden)
        }
    }
}

/// A preset that a command cannot run (its vision side is not a LLaVA one), naming why.
public struct PresetUnsupportedError: Error, CustomStringConvertible {
    public let preset: String
    public let reason: String
    public var description: String { "preset '\(preset)': \(reason)" }
}
