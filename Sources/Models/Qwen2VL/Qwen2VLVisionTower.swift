import Foundation
import TensorCore

/// `Qwen2VLVisionConfig` of transformers (config.json's `vision_config` of a qwen2_vl checkpoint).
/// Absent keys take transformers' defaults.
public struct Qwen2VLVisionConfiguration: Equatable, Sendable, Decodable {
    public var depth = 32
    public var embedDim = 1280
    /// The language model's width: what the merger outputs.
    public var hiddenSize = 3584
    public var hiddenAct = Activation.quickGelu
    public var mlpRatio = 4.0
    public var numHeads = 16
    public var inChannels = 3
    public var patchSize = 14
    public var spatialMergeSize = 2
    public var temporalPatchSize = 2
    public var ropeTheta = 10_000.0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case depth, embedDim = "embed_dim", hiddenSize = "hidden_size", hiddenAct = "hidden_act", mlpRatio = "mlp_ratio"
        case numHeads = "num_heads", inChannels = "in_channels", inChans = "in_chans", patchSize = "patch_size", spatialMergeSize = "spatial_merge_size"
        case temporalPatchSize = "temporal_patch_size", ropeParameters = "rope_parameters"
    }

    private struct RopeParameters: Decodable {
        let ropeTheta: Double?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta" }
    }

    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&depth, .depth)
        try c.update(&embedDim, .embedDim)
        try c.update(&hiddenSize, .hiddenSize)
        try c.update(&hiddenAct, .hiddenAct)
        try c.update(&mlpRatio, .mlpRatio)
        try c.update(&numHeads, .numHeads)
        try c.update(&inChannels, .inChans)  // the hub's files
        try c.update(&inChannels, .inChannels)
        try c.update(&patchSize, .patchSize)
        try c.update(&spatialMergeSize, .spatialMergeSize)
        try c.update(&temporalPatchSize, .temporalPatchSize)
        ropeTheta = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)?.ropeTheta ?? ropeTheta
    }

    /// The MLP's inner width: `int(embed_dim * mlp_ratio)`.
    public var mlpWidth: Int { Int(Double(embedDim) * mlpRatio) }
    /// Values per patch row of `pixel_values`.
    public var patchDimension: Int { inChannels * temporalPatchSize * patchSize * patchSize }

    /// Checks what the tower relies on; `file` names the config in errors.
    public func validate(file: String) throws {
        try requirePositive(
            ["depth": depth, "embed_dim": embedDim, "hidden_size": hiddenSize, "num_heads": numHeads, "in_channels": inChannels,
             "patch_size": patchSize, "spatial_merge_size": spatialMergeSize, "temporal_patch_size": temporalPatchSize],
            file: file, keyPrefix: "vision_config.")
        func fail(_ key: String, _ reason: String) -> ConfigurationError { .invalidValue(file: file, key: "vision_config." + key, reason: reason) }
        if embedDim % numHeads != 0 || (embedDim / numHeads) % 4 != 0 {
            throw fail("num_heads", "embed_dim (\(embedDim)) / num_heads (\(numHeads)) must be a multiple of 4 for the 2-D rotary embedding")
        }
        if !(mlpRatio > 0) || mlpWidth < 1 { throw fail("mlp_ratio", "must be positive, got \(mlpRatio)") }
        if hiddenAct == .silu { throw fail("hidden_act", "'silu' is not supported in the vision MLP (quick_gelu or gelu)") }
        if !(ropeTheta > 0) { throw fail("rope_parameters.rope_theta", "must be positive, got \(ropeTheta)") }
    }
}

/// One vision block's weights (pre-LN: LayerNorm → attention with 2-D RoPE → residual, LayerNorm → MLP → residual).
public struct Qwen2VLVisionBlock {
    public let norm1Weight: Tensor, norm1Bias: Tensor  // (embed,)
    public let queryKeyValue: Linear  // (3·embed, embed): queries, keys, values stacked
    public let projection: Linear  // (embed, embed)
    public let norm2Weight: Tensor, norm2Bias: Tensor  // (embed,)
    public let fc1: Linear  // (mlp, embed)
    public let fc2: Linear  // (embed, mlp)
}

/// Qwen2-VL's vision tower as transformers' `Qwen2VisionTransformerPretrainedModel`: the patch
/// embedding (a 3-D convolution with stride = kernel over 2 frames × 14 × 14, one matrix product),
/// blocks whose attention stays inside each image and rotates queries and keys by the patch's
/// row and column, then the merger (LayerNorm, each 2 × 2 square of patches concatenated, MLP
/// with GELU) to one language-model token per square.
public final class Qwen2VLVisionTower {
    public let configuration: Qwen2VLVisionConfiguration
    public let patchEmbedding: Tensor  // (embed, channels·frames·patch·patch): the convolution kernel as a matrix
    public let blocks: [Qwen2VLVisionBlock]
    public let mergerNormWeight: Tensor, mergerNormBias: Tensor  // (embed,)
    public let mergerFC1: Linear  // (embed·merge², embed·merge²)
    public let mergerFC2: Linear  // (hidden, embed·merge²)
    public let rotary: RotaryEmbedding
    /// transformers' LayerNorm epsilon in the blocks and the merger.
    public static let layerNormEpsilon: Float = 1e-6

    public init(configuration: Qwen2VLVisionConfiguration, loader: WeightSource, prefix: String) {
        let c = configuration
        let embed = c.embedDim, merged = embed * c.spatialMergeSize * c.spatialMergeSize
        self.configuration = c
        patchEmbedding = loader.take(prefix + "patch_embed.proj.weight", shape: [embed, c.inChannels, c.temporalPatchSize, c.patchSize, c.patchSize])
        blocks = (0..<c.depth).map { index in
            let p = "\(prefix)blocks.\(index)."
            return Qwen2VLVisionBlock(
                norm1Weight: loader.take(p + "norm1.weight", shape: [embed]), norm1Bias: loader.take(p + "norm1.bias", shape: [embed]),
                queryKeyValue: Linear(loader, p + "attn.qkv", inFeatures: embed, outFeatures: 3 * embed, bias: true),
                projection: Linear(loader, p + "attn.proj", inFeatures: embed, outFeatures: embed, bias: true),
                norm2Weight: loader.take(p + "norm2.weight", shape: [embed]), norm2Bias: loader.take(p + "norm2.bias", shape: [embed]),
                fc1: Linear(loader, p + "mlp.fc1", inFeatures: embed, outFeatures: c.mlpWidth, bias: true),
                fc2: Linear(loader, p + "mlp.fc2", inFeatures: c.mlpWidth, outFeatures: embed, bias: true))
        }
        mergerNormWeight = loader.take(prefix + "merger.ln_q.weight", shape: [embed])
        mergerNormBias = loader.take(prefix + "merger.ln_q.bias", shape: [embed])
        mergerFC1 = Linear(loader, prefix + "merger.mlp.0", inFeatures: merged, outFeatures: merged, bias: true)
        mergerFC2 = Linear(loader, prefix + "merger.mlp.2", inFeatures: merged, outFeatures: c.hiddenSize, bias: true)
        rotary = RotaryEmbedding(axialHeadDim: embed / c.numHeads, theta: c.ropeTheta)
    }

    /// Each patch row's (row, column) in its image, in the processor's merge order: (2, patches).
    public func patchPositions(grids: [MultimodalRotaryPositions.ImageGrid]) -> Positions {
        let merge = configuration.spatialMergeSize
        var rows: [Int] = [], columns: [Int] = []
        for grid in grids {
            for _ in 0..<grid.frames {
                for blockRow in 0..<(grid.rows / merge) {
                    for blockColumn in 0..<(grid.columns / merge) {
                        for rowInBlock in 0..<merge {
                            for columnInBlock in 0..<merge {
                                rows.append(blockRow * merge + rowInBlock)
                                columns.append(blockColumn * merge + columnInBlock)
                            }
                        }
                    }
                }
            }
        }
        return Positions(axes: [rows, columns])
    }

    /// pixelValues(patches, channels·frames·patch·patch) of the images on `grids`, one after the
    /// other → (patches / merge², hidden) language-model tokens. `observe(block, states)` sees every
    /// block's output (patches, embed).
    public func forward(
        pixelValues: Tensor, grids: [MultimodalRotaryPositions.ImageGrid], observe: ((Int, Tensor) -> Void)? = nil
    ) -> Tensor {
        let c = configuration
        let patches = pixelValues.size(0), embed = c.embedDim, heads = c.numHeads, headDim = embed / heads
        let framePatches = grids.flatMap { grid in Array(repeating: grid.rows * grid.columns, count: grid.frames) }
        precondition(pixelValues.shape == [framePatches.reduce(0, +), c.patchDimension], "pixel values \(pixelValues.shape) do not fit the grids")
        var states = Tensor(shape: [patches, embed])  // (patches, embed)
        BLAS.matmulTransposedB(states.pointer, pixelValues.pointer, patchEmbedding.pointer, m: patches, n: embed, k: c.patchDimension)
        let positions = patchPositions(grids: grids).axes  // (2, patches)
        for (index, block) in blocks.enumerated() {
            let normed = Tensor(shape: [patches, embed])  // (patches, embed)
            layerNormForward(normed.pointer, states.pointer, block.norm1Weight.pointer, block.norm1Bias.pointer,
                             rows: patches, dim: embed, epsilon: Self.layerNormEpsilon)
            let stacked = block.queryKeyValue(normed)  // (patches, 3·embed): q | k | v per row
            let queries = Tensor(shape: [patches, embed]), keys = Tensor(shape: [patches, embed]), values = Tensor(shape: [patches, embed])  // (patches, heads·headDim)
            for row in 0..<patches {
                let source = stacked.pointer + row * 3 * embed
                (queries.pointer + row * embed).update(from: source, count: embed)
                (keys.pointer + row * embed).update(from: source + embed, count: embed)
                (values.pointer + row * embed).update(from: source + 2 * embed, count: embed)
            }
            rotary.apply(queries.pointer, tokens: patches, heads: heads, positionAxes: positions)
            rotary.apply(keys.pointer, tokens: patches, heads: heads, positionAxes: positions)
            let attended = Tensor(shape: [patches, embed])  // (patches, embed)
            var start = 0
            for count in framePatches {  // full attention inside each frame of each image
                multiHeadAttention(
                    attended.pointer + start * embed, queries: queries.pointer + start * embed, keys: keys.pointer + start * embed,
                    values: values.pointer + start * embed, queryCount: count, keyCount: count, heads: heads, keyValueHeads: heads,
                    headDim: headDim
                ) { _ in count }
                start += count
            }
            let afterAttention = block.projection(attended)  // (patches, embed)
            addInPlace(afterAttention.pointer, states.pointer, count: afterAttention.count)
            let normed2 = Tensor(shape: [patches, embed])  // (patches, embed)
            layerNormForward(normed2.pointer, afterAttention.pointer, block.norm2Weight.pointer, block.norm2Bias.pointer,
                             rows: patches, dim: embed, epsilon: Self.layerNormEpsilon)
            let inner = block.fc1(normed2)  // (patches, mlp)
            c.hiddenAct.forward(inner.pointer, count: inner.count)
            states = block.fc2(inner)  // (patches, embed)
            addInPlace(states.pointer, afterAttention.pointer, count: states.count)
            observe?(index, states)
        }
        let normed = Tensor(shape: [patches, embed])  // (patches, embed); read as (patches / merge², embed·merge²)
        layerNormForward(normed.pointer, states.pointer, mergerNormWeight.pointer, mergerNormBias.pointer,
                         rows: patches, dim: embed, epsilon: Self.layerNormEpsilon)
        let squares = Tensor(shape: [patches / (c.spatialMergeSize * c.spatialMergeSize), mergerFC1.inFeatures])
        squares.pointer.update(from: normed.pointer, count: normed.count)  // consecutive patches form each square
        let inner = mergerFC1(squares)  // (tokens, embed·merge²)
        Activation.gelu.forward(inner.pointer, count: inner.count)
        return mergerFC2(inner)  // (tokens, hidden)
    }
}
