import Foundation

/// The sizes of a LLaMA decoder that FLOPs depend on.
public struct DecoderShape: Equatable, Codable, Sendable {
    public var layers: Int
    public var hidden: Int
    public var intermediate: Int
    public var heads: Int
    public var keyValueHeads: Int
    public var headDim: Int
    public var vocabulary: Int

    public init(layers: Int, hidden: Int, intermediate: Int, heads: Int, keyValueHeads: Int, headDim: Int, vocabulary: Int) {
        self.layers = layers
        self.hidden = hidden
        self.intermediate = intermediate
        self.heads = heads
        self.keyValueHeads = keyValueHeads
        self.headDim = headDim
        self.vocabulary = vocabulary
    }
}

/// The sizes of a CLIP vision tower (and LLaVA projector) that FLOPs depend on.
public struct VisionShape: Equatable, Codable, Sendable {
    public var hidden: Int
    public var intermediate: Int
    public var heads: Int
    /// Encoder layers that run: up to the feature layer (LLaVA's -2 skips the last one).
    public var layersRun: Int
    public var patchSize: Int
    public var channels: Int
    /// Patch tokens per tile (576 at 336 pixels, patch 14); the class token comes on top.
    public var patchesPerTile: Int

    public init(hidden: Int, intermediate: Int, heads: Int, layersRun: Int, patchSize: Int, channels: Int, patchesPerTile: Int) {
        self.hidden = hidden
        self.intermediate = intermediate
        self.heads = heads
        self.layersRun = layersRun
        self.patchSize = patchSize
        self.channels = channels
        self.patchesPerTile = patchesPerTile
    }
}

/// The sizes of Qwen2-VL's (and Qwen2.5-VL's) vision tower that FLOPs depend on: blocks over
/// every patch of an image, then the merger of each merge × merge square. Qwen2-VL's blocks attend
/// over the whole image and have a plain MLP; Qwen2.5-VL's attend within windows of
/// `windowTokens` × `windowTokens` merged patches (except `fullAttentionBlocks` of them) and have a
/// gated MLP (three matrices).
public struct Qwen2VLVisionShape: Equatable, Codable, Sendable {
    public var embed: Int
    public var mlp: Int
    public var depth: Int
    /// Values per patch: channels × temporal patch × patch × patch.
    public var patchDimension: Int
    public var mergeSize: Int
    public var gatedMLP: Bool
    /// Qwen2.5-VL: merged patches per window side (nil: every block attends over the whole image).
    public var windowTokens: Int?
    public var fullAttentionBlocks: Int

    public init(
        embed: Int, mlp: Int, depth: Int, patchDimension: Int, mergeSize: Int, gatedMLP: Bool = false, windowTokens: Int? = nil,
        fullAttentionBlocks: Int = 0
    ) {
        self.embed = embed
        self.mlp = mlp
        self.depth = depth
        self.patchDimension = patchDimension
        self.mergeSize = mergeSize
        self.gatedMLP = gatedMLP
        self.windowTokens = windowTokens
        self.fullAttentionBlocks = fullAttentionBlocks
    }
}

/// Multiply-add counts, as the paper counts them and exactly.
public enum FLOPs {
    /// The paper's per-layer count for n image tokens: 4·n·d² + 2·n²·d + 3·n·d·m (image tokens only:
    /// no text, no vision tower, no ranking). d = hidden size, m = FFN size.
    public static func paperLayer(imageTokens n: Int, hidden d: Int, intermediate m: Int) -> Double {
        let n = Double(n), d = Double(d), m = Double(m)
        return 4 * n * d * d + 2 * n * n * d + 3 * n * d * m
    }

    /// The paper's figure summed over layers; imageTokensPerLayer(layers).
    public static func paper(shape: DecoderShape, imageTokensPerLayer: [Int]) -> Double {
        imageTokensPerLayer.reduce(0) { $0 + paperLayer(imageTokens: $1, hidden: shape.hidden, intermediate: shape.intermediate) }
    }

    /// Image tokens each decoder layer processes for one block of `originalCount` tokens.
    public static func imageTokensPerLayer(originalCount: Int, reducer: VisualTokenReducer, layers: Int) -> [Int] {
        var counts: [Int] = []
        var current = originalCount
        var drop = 0
        for layer in 0..<layers {
            // A drop after `dropLayers[drop]` layers changes what layer index dropLayers[drop] (0-based) sees.
            if drop < reducer.dropLayers.count && layer == reducer.dropLayers[drop] {
                current = min(current, reducer.keptCount(originalCount: originalCount, afterDrop: drop))
                drop += 1
            }
            counts.append(current)
        }
        return counts
    }

    /// Exact multiply-adds of one decoder layer over `tokens` new rows, `pastTokens` already in its
    /// cache, causal attention counted row by row (row i sees past + i + 1 keys).
    public static func exactDecoderLayer(shape: DecoderShape, tokens: Int, pastTokens: Int = 0) -> Double {
        let t = Double(tokens), d = Double(shape.hidden)
        let queryWidth = Double(shape.heads * shape.headDim), keyValueWidth = Double(shape.keyValueHeads * shape.headDim)
        let projections = t * d * (2 * queryWidth + 2 * keyValueWidth)
        // Σ_{i<t} (past + i + 1) visible keys, for the scores and the weighted sum of values.
        let visible = t * Double(pastTokens) + t * (t + 1) / 2
        let attention = 2 * visible * queryWidth
        let mlp = 3 * t * d * Double(shape.intermediate)
        return projections + attention + mlp
    }

    /// Exact multiply-adds of ranking `tokens` rows by `queryRows` query rows: the key projection of
    /// every row, the queries, and the scores.
    public static func exactRanking(shape: DecoderShape, tokens: Int, queryRows: Int) -> Double {
        let t = Double(tokens), d = Double(shape.hidden)
        let queryWidth = Double(shape.heads * shape.headDim), keyValueWidth = Double(shape.keyValueHeads * shape.headDim)
        return t * d * keyValueWidth + Double(queryRows) * d * queryWidth + Double(queryRows) * t * queryWidth
    }

    /// Both counts for the prefill of one prompt: `textTokens` text tokens and image blocks of
    /// `imageBlockSizes` tokens, reduced by `reducer`; `visionAndProjector` is the vision side's
    /// exact count (`exactVision`, `exactQwen2VLVision`; 0 where it is not counted).
    public static func prefillReport(
        decoder: DecoderShape, visionAndProjector: Double, textTokens: Int, imageBlockSizes: [Int], reducer: VisualTokenReducer
    ) -> FLOPsReport {
        let layers = decoder.layers
        var imagePerLayer = [Int](repeating: 0, count: layers)
        var imagePerLayerVanilla = [Int](repeating: 0, count: layers)
        for size in imageBlockSizes {
            let reduced = imageTokensPerLayer(originalCount: size, reducer: reducer, layers: layers)
            for layer in 0..<layers {
                imagePerLayer[layer] += reduced[layer]
                imagePerLayerVanilla[layer] += size
            }
        }
        var languageModel = 0.0
        for layer in 0..<layers {
            languageModel += exactDecoderLayer(shape: decoder, tokens: textTokens + imagePerLayer[layer])
        }
        var ranking = 0.0
        // A random control ranks nothing.
        let ranks: Bool
        if case .random = reducer.scoring { ranks = false } else { ranks = true }
        for layer in reducer.dropLayers where ranks && layer < layers && !imageBlockSizes.isEmpty {
            ranking += exactRanking(shape: decoder, tokens: textTokens + imagePerLayer[layer - 1], queryRows: 1)
        }
        let lmHead = Double(decoder.vocabulary * decoder.hidden)
        return FLOPsReport(
            paperImageTeraFLOPs: paper(shape: decoder, imageTokensPerLayer: imagePerLayer) / 1e12,
            paperImageTeraFLOPsWithoutReduction: paper(shape: decoder, imageTokensPerLayer: imagePerLayerVanilla) / 1e12,
            exactVisionAndProjector: visionAndProjector, exactLanguageModel: languageModel, exactLMHead: lmHead, exactRanking: ranking,
            imageTokensPerLayer: imagePerLayer)
    }

    /// Exact multiply-adds of the vision tower over `tiles` tiles and the projector over `imageTokens` features.
    public static func exactVision(shape: VisionShape, tiles: Int, imageTokens: Int, projectorInput: Int, textHidden: Int) -> Double {
        let tokens = Double(shape.patchesPerTile + 1), d = Double(shape.hidden)
        let patchEmbedding = Double(shape.patchesPerTile) * Double(shape.channels * shape.patchSize * shape.patchSize) * d
        let perLayer = 4 * tokens * d * d + 2 * tokens * tokens * d + 2 * tokens * d * Double(shape.intermediate)
        let tower = Double(tiles) * (patchEmbedding + Double(shape.layersRun) * perLayer)
        let projector = Double(imageTokens) * (Double(projectorInput) * Double(textHidden) + Double(textHidden) * Double(textHidden))
        return tower + projector
    }

    /// Exact multiply-adds of Qwen2-VL's vision tower and merger over images (one frame each) of
    /// `tokenGrids` merged tokens (rows, columns; merge² patches per token): the patch embedding,
    /// per block the q/k/v and output projections, attention within the image (or the window) and
    /// the MLP, then the merger's two linears into `textHidden`.
    public static func exactQwen2VLVision(shape: Qwen2VLVisionShape, tokenGrids: [(rows: Int, columns: Int)], textHidden: Int) -> Double {
        let e = Double(shape.embed), squares = Double(shape.mergeSize * shape.mergeSize)
        return tokenGrids.reduce(0) { total, grid in
            let tokens = Double(grid.rows * grid.columns), p = tokens * squares
            let patchEmbedding = p * Double(shape.patchDimension) * e
            let matrices = 4 * p * e * e + (shape.gatedMLP ? 3 : 2) * p * e * Double(shape.mlp)
            let fullAttention = 2 * p * p * e
            var windowAttention = fullAttention
            if let side = shape.windowTokens {
                // Windows of side × side tokens from the top left; those at the right and bottom edges are cut.
                let heights = stride(from: 0, to: grid.rows, by: side).map { min(side, grid.rows - $0) }
                let widths = stride(from: 0, to: grid.columns, by: side).map { min(side, grid.columns - $0) }
                windowAttention = heights.reduce(0) { sum, height in
                    sum + widths.reduce(0) { inner, width in let w = Double(height * width) * squares; return inner + 2 * w * w * e }
                }
            }
            let windowed = shape.windowTokens == nil ? 0 : shape.depth - shape.fullAttentionBlocks
            let attention = Double(shape.depth - windowed) * fullAttention + Double(windowed) * windowAttention
            let merger = tokens * (squares * e) * (squares * e + Double(textHidden))
            return total + patchEmbedding + Double(shape.depth) * matrices + attention + merger
        }
    }
}

/// FLOPs of one prefill: the paper's figure and the exact count, kept apart.
public struct FLOPsReport: Codable, Equatable, Sendable {
    /// The paper's figure (TFLOPs): multiply-adds of image tokens only in the decoder.
    public let paperImageTeraFLOPs: Double
    /// The same figure without reduction.
    public let paperImageTeraFLOPsWithoutReduction: Double
    /// Exact multiply-adds of every matrix product and attention of the prefill, by part.
    public let exactVisionAndProjector: Double
    public let exactLanguageModel: Double
    /// The output head on the last prompt position.
    public let exactLMHead: Double
    public let exactRanking: Double
    /// Image tokens entering each decoder layer.
    public let imageTokensPerLayer: [Int]
    public var exactTotal: Double { exactVisionAndProjector + exactLanguageModel + exactLMHead + exactRanking }
    public var note: String {
        "paperImageTeraFLOPs counts multiply-adds of image tokens only (4nd²+2n²d+3ndm per layer), as the paper's tables; exact* count multiply-adds of every matrix product and attention score of the prefill (all tokens, vision tower, projector, lm_head, ranking), elementwise work excluded"
    }

    enum CodingKeys: String, CodingKey {
        case paperImageTeraFLOPs, paperImageTeraFLOPsWithoutReduction, exactVisionAndProjector, exactLanguageModel
        case exactLMHead, exactRanking, imageTokensPerLayer, exactTotal, note
    }

    public init(paperImageTeraFLOPs: Double, paperImageTeraFLOPsWithoutReduction: Double, exactVisionAndProjector: Double,
                exactLanguageModel: Double, exactLMHead: Double, exactRanking: Double, imageTokensPerLayer: [Int]) {
        self.paperImageTeraFLOPs = paperImageTeraFLOPs
        self.paperImageTeraFLOPsWithoutReduction = paperImageTeraFLOPsWithoutReduction
        self.exactVisionAndProjector = exactVisionAndProjector
        self.exactLanguageModel = exactLanguageModel
        self.exactLMHead = exactLMHead
        self.exactRanking = exactRanking
        self.imageTokensPerLayer = imageTokensPerLayer
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            paperImageTeraFLOPs: try c.decode(Double.self, forKey: .paperImageTeraFLOPs),
            paperImageTeraFLOPsWithoutReduction: try c.decode(Double.self, forKey: .paperImageTeraFLOPsWithoutReduction),
            exactVisionAndProjector: try c.decode(Double.self, forKey: .exactVisionAndProjector),
            exactLanguageModel: try c.decode(Double.self, forKey: .exactLanguageModel),
            exactLMHead: try c.decode(Double.self, forKey: .exactLMHead),
            exactRanking: try c.decode(Double.self, forKey: .exactRanking),
            imageTokensPerLayer: try c.decode([Int].self, forKey: .imageTokensPerLayer))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(paperImageTeraFLOPs, forKey: .paperImageTeraFLOPs)
        try c.encode(paperImageTeraFLOPsWithoutReduction, forKey: .paperImageTeraFLOPsWithoutReduction)
        try c.encode(exactVisionAndProjector, forKey: .exactVisionAndProjector)
        try c.encode(exactLanguageModel, forKey: .exactLanguageModel)
        try c.encode(exactLMHead, forKey: .exactLMHead)
        try c.encode(exactRanking, forKey: .exactRanking)
        try c.encode(imageTokensPerLayer, forKey: .imageTokensPerLayer)
        try c.encode(exactTotal, forKey: .exactTotal)
        try c.encode(note, forKey: .note)
    }
}
