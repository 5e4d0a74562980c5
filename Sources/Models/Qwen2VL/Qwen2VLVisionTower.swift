import Foundation
import TensorCore

/// The vision tower's generation: Qwen2-VL's (LayerNorm, a plain MLP, attention over the whole
/// image) or Qwen2.5-VL's (RMSNorm, a gated SiLU MLP, attention within windows except in its
/// full-attention blocks).
public enum Qwen2VLVisionGeneration: String, Equatable, Sendable {
    case qwen2VL = "qwen2_vl"
    case qwen25VL = "qwen2_5_vl"

    /// The `userInfo` key under which a config decoder says which generation it reads.
    public static let key = CodingUserInfoKey(rawValue: "Qwen2VLVisionGeneration")!
}

/// `Qwen2VLVisionConfig` / `Qwen2_5_VLVisionConfig` of transformers (config.json's `vision_config`),
/// the generation given by the decoder's `userInfo` (Qwen2-VL's by default). Absent keys take
/// transformers' defaults. The two name the widths differently: Qwen2-VL's `embed_dim` is the
/// tower's and `hidden_size` the language model's; Qwen2.5-VL's `hidden_size` is the tower's and
/// `out_hidden_size` the language model's.
public struct Qwen2VLVisionConfiguration: Equatable, Sendable, Decodable {
    public var generation = Qwen2VLVisionGeneration.qwen2VL
    public var depth = 32
    /// The tower's width.
    public var embedDim = 1280
    /// The language model's width: what the merger outputs.
    public var hiddenSize = 3584
    public var hiddenAct = Activation.quickGelu
    /// Qwen2-VL: the plain MLP's width is `embed_dim * mlp_ratio`.
    public var mlpRatio = 4.0
    /// Qwen2.5-VL: the gated MLP's width.
    public var intermediateSize = 3420
    public var numHeads = 16
    public var inChannels = 3
    public var patchSize = 14
    public var spatialMergeSize = 2
    public var temporalPatchSize = 2
    public var ropeTheta = 10_000.0
    /// Qwen2.5-VL: the side of an attention window in pixels, and the blocks that attend over the whole image.
    public var windowSize = 112
    public var fullAttentionBlocks = [7, 15, 23, 31]

    public init() {}

    /// Qwen2.5-VL-7B's tower, transformers' defaults for that generation.
    public static var qwen25VLDefaults: Qwen2VLVisionConfiguration {
        var c = Qwen2VLVisionConfiguration()
        c.generation = .qwen25VL
        c.hiddenAct = .silu
        return c
    }

    enum CodingKeys: String, CodingKey {
        case depth, embedDim = "embed_dim", hiddenSize = "hidden_size", outHiddenSize = "out_hidden_size", hiddenAct = "hidden_act"
        case mlpRatio = "mlp_ratio", intermediateSize = "intermediate_size"
        case numHeads = "num_heads", inChannels = "in_channels", inChans = "in_chans", patchSize = "patch_size", spatialMergeSize = "spatial_merge_size"
        case temporalPatchSize = "temporal_patch_size", ropeParameters = "rope_parameters", windowSize = "window_size"
        case fullAttentionBlocks = "fullatt_block_indexes"
    }

    private struct RopeParameters: Decodable {
        let ropeTheta: Double?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta" }
    }

    public init(from decoder: Decoder) throws {
        let generation = decoder.userInfo[Qwen2VLVisionGeneration.key] as? Qwen2VLVisionGeneration ?? .qwen2VL
        self = generation == .qwen25VL ? .qwen25VLDefaults : Qwen2VLVisionConfiguration()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&depth, .depth)
        if generation == .qwen25VL {
            try c.update(&embedDim, .hiddenSize)
            try c.update(&hiddenSize, .outHiddenSize)
        } else {
            try c.update(&embedDim, .embedDim)
            try c.update(&hiddenSize, .hiddenSize)
        }
        try c.update(&hiddenAct, .hiddenAct)
        try c.update(&mlpRatio, .mlpRatio)
        try c.update(&intermediateSize, .intermediateSize)
        try c.update(&numHeads, .numHeads)
        try c.update(&inChannels, .inChans)  // the hub's files
        try c.update(&inChannels, .inChannels)
        try c.update(&patchSize, .patchSize)
        try c.update(&spatialMergeSize, .spatialMergeSize)
        try c.update(&temporalPatchSize, .temporalPatchSize)
        try c.update(&windowSize, .windowSize)
        try c.update(&fullAttentionBlocks, .fullAttentionBlocks)
        ropeTheta = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)?.ropeTheta ?? ropeTheta
    }

    /// The MLP's inner width: Qwen2-VL's `int(embed_dim * mlp_ratio)`, Qwen2.5-VL's `intermediate_size`.
    public var mlpWidth: Int { generation == .qwen25VL ? intermediateSize : Int(Double(embedDim) * mlpRatio) }
    /// Values per patch row of `pixel_values`.
    public var patchDimension: Int { inChannels * temporalPatchSize * patchSize * patchSize }
    /// Qwen2.5-VL: merged tokens per window side.
    public var windowTokens: Int { windowSize / spatialMergeSize / patchSize }

    /// Checks what the tower relies on; `file` names the config in errors.
    public func validate(file: String) throws {
        try requirePositive(
            ["depth": depth, "embed_dim": embedDim, "hidden_size": hiddenSize, "num_heads": numHeads, "in_channels": inChannels,
             "patch_size": patchSize, "spatial_merge_size": spatialMergeSize, "temporal_patch_size": temporalPatchSize],
            file: file, keyPrefix: "vision_config.")
        func fail(_ key: String, _ reason: String) -> ConfigurationError { .invalidValue(file: file, key: "vision_config." + key, reason: reason) }
        if embedDim % numHeads != 0 || (embedDim / numHeads) % 4 != 0 {
            throw fail("num_heads", "the tower's width (\(embedDim)) / num_heads (\(numHeads)) must be a multiple of 4 for the 2-D rotary embedding")
        }
        if !(ropeTheta > 0) { throw fail("rope_parameters.rope_theta", "must be positive, got \(ropeTheta)") }
        switch generation {
        case .qwen2VL:
            if !(mlpRatio > 0) || mlpWidth < 1 { throw fail("mlp_ratio", "must be positive, got \(mlpRatio)") }
            if hiddenAct == .silu { throw fail("hidden_act", "'silu' is not supported in the vision MLP (quick_gelu or gelu)") }
        case .qwen25VL:
            if intermediateSize < 1 { throw fail("intermediate_size", "must be positive, got \(intermediateSize)") }
            if hiddenAct != .silu { throw fail("hidden_act", "'\(hiddenAct.rawValue)' is not supported in the gated vision MLP (only 'silu')") }
            if windowTokens < 1 {
                throw fail("window_size", "(\(windowSize)) must hold at least one merged patch (\(spatialMergeSize * patchSize) pixels)")
            }
            if let block = fullAttentionBlocks.first(where: { !(0..<depth).contains($0) }) {
                throw fail("fullatt_block_indexes", "\(block) is not a block of a \(depth)-block tower")
            }
        }
    }
}

/// A normalisation of the tower: LayerNorm with a bias (Qwen2-VL) or RMSNorm (Qwen2.5-VL), epsilon 1e-6.
public struct Qwen2VLVisionNorm {
    public let weight: Tensor  // (embed,)
    public let bias: Tensor?  // (embed,); nil for RMSNorm
    static let epsilon: Float = 1e-6

    init(_ loader: WeightSource, _ prefix: String, width: Int, generation: Qwen2VLVisionGeneration) {
        weight = loader.take(prefix + ".weight", shape: [width])
        bias = generation == .qwen2VL ? loader.take(prefix + ".bias", shape: [width]) : nil
    }

    /// input(rows, width) normalised into a new tensor.
    func callAsFunction(_ input: Tensor) -> Tensor {
        let rows = input.size(0), width = input.size(1)
        let output = Tensor(shape: [rows, width])  // (rows, width)
        if let bias {
            layerNormForward(output.pointer, input.pointer, weight.pointer, bias.pointer, rows: rows, dim: width, epsilon: Self.epsilon)
        } else {
            rmsNormForward(output.pointer, input.pointer, weight.pointer, rows: rows, dim: width, epsilon: Self.epsilon)
        }
        return output
    }
}

/// A block's MLP: Qwen2-VL's fc1 → activation → fc2, or Qwen2.5-VL's down(silu(gate) · up).
public enum Qwen2VLVisionMLP {
    case plain(fc1: Linear, fc2: Linear, activation: Activation)
    case gated(gate: Linear, up: Linear, down: Linear)

    /// input(rows, embed) → (rows, embed).
    func callAsFunction(_ input: Tensor) -> Tensor {
        switch self {
        case let .plain(fc1, fc2, activation):
            let inner = fc1(input)  // (rows, mlp)
            activation.forward(inner.pointer, count: inner.count)
            return fc2(inner)
        case let .gated(gate, up, down):
            let gated = gate(input), upped = up(input)  // (rows, mlp) each
            swigluForward(gated.pointer, gate: gated.pointer, up: upped.pointer, count: gated.count)
            return down(gated)
        }
    }
}

/// One vision block's weights (pre-norm: norm → attention with 2-D RoPE → residual, norm → MLP → residual).
public struct Qwen2VLVisionBlock {
    public let norm1: Qwen2VLVisionNorm
    public let queryKeyValue: Linear  // (3·embed, embed): queries, keys, values stacked
    public let projection: Linear  // (embed, embed)
    public let norm2: Qwen2VLVisionNorm
    public let mlp: Qwen2VLVisionMLP
}

/// Qwen2-VL's vision tower as transformers' `Qwen2VisionTransformerPretrainedModel` (and Qwen2.5-VL's,
/// `Qwen2_5_VisionTransformerPretrainedModel`): the patch embedding (a 3-D convolution with stride =
/// kernel over 2 frames × 14 × 14, one matrix product), blocks that rotate queries and keys by the
/// patch's row and column and attend within each image (Qwen2.5-VL: within windows of
/// `windowTokens` × `windowTokens` merged patches, except in its full-attention blocks), then the
/// merger (norm, each 2 × 2 square of patches concatenated, MLP with GELU) to one language-model
/// token per square.
public final class Qwen2VLVisionTower {
    public let configuration: Qwen2VLVisionConfiguration
    public let patchEmbedding: Tensor  // (embed, channels·frames·patch·patch): the convolution kernel as a matrix
    public let blocks: [Qwen2VLVisionBlock]
    public let mergerNorm: Qwen2VLVisionNorm
    public let mergerFC1: Linear  // (embed·merge², embed·merge²)
    public let mergerFC2: Linear  // (hidden, embed·merge²)
    public let rotary: RotaryEmbedding

    public init(configuration: Qwen2VLVisionConfiguration, loader: WeightSource, prefix: String) {
        let c = configuration
        let embed = c.embedDim, merged = embed * c.spatialMergeSize * c.spatialMergeSize
        self.configuration = c
        patchEmbedding = loader.take(prefix + "patch_embed.proj.weight", shape: [embed, c.inChannels, c.temporalPatchSize, c.patchSize, c.patchSize])
        blocks = (0..<c.depth).map { index in
            let p = "\(prefix)blocks.\(index)."
            let mlp: Qwen2VLVisionMLP = switch c.generation {
            case .qwen2VL:
                .plain(fc1: Linear(loader, p + "mlp.fc1", inFeatures: embed, outFeatures: c.mlpWidth, bias: true),
                       fc2: Linear(loader, p + "mlp.fc2", inFeatures: c.mlpWidth, outFeatures: embed, bias: true), activation: c.hiddenAct)
            case .qwen25VL:
                .gated(gate: Linear(loader, p + "mlp.gate_proj", inFeatures: embed, outFeatures: c.mlpWidth, bias: true),
                       up: Linear(loader, p + "mlp.up_proj", inFeatures: embed, outFeatures: c.mlpWidth, bias: true),
                       down: Linear(loader, p + "mlp.down_proj", inFeatures: c.mlpWidth, outFeatures: embed, bias: true))
            }
            return Qwen2VLVisionBlock(
                norm1: Qwen2VLVisionNorm(loader, p + "norm1", width: embed, generation: c.generation),
                queryKeyValue: Linear(loader, p + "attn.qkv", inFeatures: embed, outFeatures: 3 * embed, bias: true),
                projection: Linear(loader, p + "attn.proj", inFeatures: embed, outFeatures: embed, bias: true),
                norm2: Qwen2VLVisionNorm(loader, p + "norm2", width: embed, generation: c.generation), mlp: mlp)
        }
        mergerNorm = Qwen2VLVisionNorm(loader, prefix + "merger.ln_q", width: embed, generation: c.generation)
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

    /// Qwen2.5-VL's window order (transformers' `get_vision_window_index`): the merged patches of
    /// each frame of each image, window by window (windows row-major, `windowTokens` on a side,
    /// those at the right and bottom edges smaller), row-major inside a window; and the number of
    /// merged patches in each window.
    public func windowOrder(grids: [MultimodalRotaryPositions.ImageGrid]) -> (order: [Int], windowLengths: [Int]) {
        let merge = configuration.spatialMergeSize, side = configuration.windowTokens
        var order: [Int] = [], lengths: [Int] = [], offset = 0
        for grid in grids {
            let (rows, columns) = (grid.rows / merge, grid.columns / merge)
            for frame in 0..<grid.frames {
                for windowTop in stride(from: 0, to: rows, by: side) {
                    for windowLeft in stride(from: 0, to: columns, by: side) {
                        var length = 0
                        for row in windowTop..<min(windowTop + side, rows) {
                            for column in windowLeft..<min(windowLeft + side, columns) {
                                order.append(offset + (frame * rows + row) * columns + column)
                                length += 1
                            }
                        }
                        lengths.append(length)
                    }
                }
            }
            offset += grid.frames * rows * columns
        }
        return (order, lengths)
    }

    /// pixelValues(patches, channels·frames·patch·patch) of the images on `grids`, one after the
    /// other → (patches / merge², hidden) language-model tokens. `observe(block, states)` sees every
    /// block's output (patches, embed) in the processor's merge order.
    public func forward(
        pixelValues: Tensor, grids: [MultimodalRotaryPositions.ImageGrid], observe: ((Int, Tensor) -> Void)? = nil
    ) -> Tensor {
        let c = configuration
        let patches = pixelValues.size(0), embed = c.embedDim, heads = c.numHeads, headDim = embed / heads
        let unit = c.spatialMergeSize * c.spatialMergeSize
        let framePatches = grids.flatMap { grid in Array(repeating: grid.rows * grid.columns, count: grid.frames) }
        precondition(pixelValues.shape == [framePatches.reduce(0, +), c.patchDimension], "pixel values \(pixelValues.shape) do not fit the grids")
        // The patches in the order the blocks see them: Qwen2.5-VL's window order (each merged patch's
        // merge² patches stay together), Qwen2-VL's merge order; and the runs that attend together.
        var patchOrder = Array(0..<patches)  // (patches,): processor row of each working row
        var windowPatches: [Int] = []  // Qwen2.5-VL: patches per window, in working order
        if c.generation == .qwen25VL {
            let (order, lengths) = windowOrder(grids: grids)
            patchOrder = order.flatMap { merged in (merged * unit)..<((merged + 1) * unit) }
            windowPatches = lengths.map { $0 * unit }
        }
        var states = Tensor(shape: [patches, embed])  // (patches, embed), working order
        let windowed = c.generation == .qwen25VL
        let ordered = windowed ? gatherRows(pixelValues, patchOrder) : pixelValues  // (patches, patchDimension)
        BLAS.matmulTransposedB(states.pointer, ordered.pointer, patchEmbedding.pointer, m: patches, n: embed, k: c.patchDimension)
        let positions = patchPositions(grids: grids).gathering(patchOrder).axes  // (2, patches)
        let inverseOrder = [Int](unsafeUninitializedCapacity: patches) { buffer, count in
            for (working, row) in patchOrder.enumerated() { buffer[row] = working }
            count = patches
        }
        for (index, block) in blocks.enumerated() {
            let normed = block.norm1(states)  // (patches, embed)
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
            for count in windowed && !c.fullAttentionBlocks.contains(index) ? windowPatches : framePatches {  // full attention inside each window, or each frame of each image
                multiHeadAttention(
                    attended.pointer + start * embed, queries: queries.pointer + start * embed, keys: keys.pointer + start * embed,
                    values: values.pointer + start * embed, queryCount: count, keyCount: count, heads: heads, keyValueHeads: heads,
                    headDim: headDim
                ) { _ in count }
                start += count
            }
            let afterAttention = block.projection(attended)  // (patches, embed)
            addInPlace(afterAttention.pointer, states.pointer, count: afterAttention.count)
            states = block.mlp(block.norm2(afterAttention))  // (patches, embed)
            addInPlace(states.pointer, afterAttention.pointer, count: states.count)
            if let observe { observe(index, windowed ? gatherRows(states, inverseOrder) : states) }
        }
        let normed = mergerNorm(windowed ? gatherRows(states, inverseOrder) : states)  // (patches, embed) in merge order; read as (patches / merge², embed·merge²)
        let squares = Tensor(shape: [patches / unit, mergerFC1.inFeatures])
        squares.pointer.update(from: normed.pointer, count: normed.count)  // consecutive patches form each square
        let inner = mergerFC1(squares)  // (tokens, embed·merge²)
        Activation.gelu.forward(inner.pointer, count: inner.count)
        return mergerFC2(inner)  // (tokens, hidden)
    }
}
