import Foundation
import SafeTensors
import TensorCore
import Vision

/// `LlavaNextForConditionalGeneration`: LLaVA with anyres tiles. An image is its base view plus
/// a grid of tiles; their features are laid out as one map, cut to the image's aspect ratio
/// (`unpad_image`), with the learned `image_newline` after every row (`pack_image_features`).
public final class LlavaNextModel: LlavaModel {
    /// (textHidden,) appended after every row of the tiles' feature map.
    private let newline: Tensor

    public required init(configuration: LlavaConfiguration, loader: WeightSource, layout: LlavaLayout) {
        newline = loader.take(layout.imageNewlineName, shape: [configuration.textConfig.hiddenSize])
        super.init(configuration: configuration, loader: loader, layout: layout)
    }

    public override var imageNewline: Tensor? { newline }

    /// Where each row of one image's features comes from.
    enum PackedRow: Equatable {
        case patch(tile: Int, patch: Int)
        case newline
    }

    /// The rows of `pack_image_features` for an image of `tileCount` tiles laid out on `grid`:
    /// the base tile's patches, then the kept rows of the tiles' map with a newline after each;
    /// a lone base image gets one newline (as transformers does).
    static func packedRows(grid: AnyresFeatureGrid, tileCount: Int) -> [PackedRow] {
        let side = grid.patchesPerTileSide
        var rows = (0..<(side.height * side.width)).map { PackedRow.patch(tile: 0, patch: $0) }
        guard tileCount > 1 else { return rows + [.newline] }
        for y in grid.keptRows {
            for x in grid.keptColumns {
                let tile = 1 + (y / side.height) * grid.tileColumns + x / side.width
                rows.append(.patch(tile: tile, patch: (y % side.height) * side.width + x % side.width))
            }
            rows.append(.newline)
        }
        return rows
    }

    /// One image's features (N, textHidden) from its tiles' projected features (base image
    /// first, then the grid's tiles row by row, each (patches, textHidden)).
    public override func assembleImageFeatures(tileFeatures: [Tensor], image: ImageInput) -> Tensor {
        guard let grid = image.grid else { return tileFeatures[0] }
        let width = languageModel.hiddenSize
        let rows = Self.packedRows(grid: grid, tileCount: tileFeatures.count)
        let output = Tensor(shape: [rows.count, width])  // (N, textHidden)
        for (row, source) in rows.enumerated() {
            let from: UnsafePointer<Float>
            switch source {
            case let .patch(tile, patch): from = UnsafePointer(tileFeatures[tile].pointer + patch * width)
            case .newline: from = UnsafePointer(newline.pointer)
            }
            (output.pointer + row * width).update(from: from, count: width)
        }
        return output
    }

    /// dblock(N, textHidden) back to each tile's (patches, textHidden) gradient (zero where
    /// unpadding cut the tile); the newline rows are summed into `gradients.imageNewline`.
    public override func assembleImageFeaturesBackward(_ dBlock: Tensor, image: ImageInput, gradients: LlavaModel?) -> [Tensor] {
        guard let grid = image.grid else { return [dBlock] }
        let width = dBlock.size(1), side = grid.patchesPerTileSide
        let dTiles = image.tiles.map { _ in Tensor(shape: [side.height * side.width, width]) }  // each (patches, textHidden)
        let dNewline = gradients?.imageNewline  // (textHidden,)
        for (row, source) in Self.packedRows(grid: grid, tileCount: image.tiles.count).enumerated() {
            let destination: UnsafeMutablePointer<Float>
            switch source {
            case let .patch(tile, patch): destination = dTiles[tile].pointer + patch * width
            case .newline:
                guard let dNewline else { continue }
                destination = dNewline.pointer
            }
            let gradient = dBlock.pointer + row * width
            for i in 0..<width { destination[i] += gradient[i] }
        }
        return dTiles
    }

    public override func imageTokenCount(_ image: ImageInput) -> Int {
        guard let grid = image.grid else { return tokensPerTile }
        return Self.packedRows(grid: grid, tileCount: image.tiles.count).count
    }

    public override func makeImageProcessor(directory: URL, options: ImageProcessingOptions) throws -> any ImageProcessing {
        if options.padToSquare { throw PipelineError.padToSquareWithAnyres(directory: directory.path) }
        let file = try processorConfigURL(in: directory)
        var config = try AnyresProcessorConfig.load(contentsOf: file)
        if let maxTiles = options.maxTiles {
            let side = config.tileSide
            config.imageGridPinpoints = config.imageGridPinpoints.filter { ($0.height / side) * ($0.width / side) <= maxTiles }
            if config.imageGridPinpoints.isEmpty { throw PipelineError.noGridResolution(file: file.path, maxTiles: maxTiles) }
        }
        return LlavaNextImageProcessor(
            anyres: AnyresProcessor(config: config), tileSide: configuration.visionConfig.imageSize,
            visionPatchSize: configuration.visionConfig.patchSize, tokensPerTile: tokensPerTile)
    }

    /// LLaVA-NeXT in the registry.
    public static let nextFamily = ModelFamily.llavaStyle(
        name: "LLaVA-NeXT", modelTypes: ["llava_next"], architectures: ["LlavaNextForConditionalGeneration"],
        model: LlavaNextModel.self, usesGridPinpoints: true)

    public override class func validate(_ configuration: LlavaConfiguration, file: String) throws {
        if configuration.visionFeatureSelectStrategy != .default {
            throw ConfigurationError.invalidValue(
                file: file, key: "vision_feature_select_strategy",
                reason: "LLaVA-NeXT lays each tile's patches out as a square grid, which needs 'default' (no class token)")
        }
        let pinpoints = configuration.imageGridPinpoints
        if pinpoints.isEmpty || pinpoints.contains(where: { $0.count != 2 || $0.contains { $0 <= 0 } }) {
            throw ConfigurationError.invalidValue(
                file: file, key: "image_grid_pinpoints", reason: "must be a non-empty list of [height, width] pairs of positive sizes")
        }
    }
}

extension LlavaConfiguration {
    /// Whether config.json names LLaVA-NeXT.
    public var isNext: Bool { LlavaNextModel.nextFamily.modelTypes.contains(modelType) }
}

/// LLaVA-NeXT's image processing (`LlavaNextImageProcessor`): the base image and the grid's tiles,
/// and where their features go.
public struct LlavaNextImageProcessor: ImageProcessing {
    public let anyres: AnyresProcessor
    public let tileSide: Int
    public let visionPatchSize: Int
    public let tokensPerTile: Int

    public func prepare(_ image: RGBImage, source: String) throws -> ImageInput {
        let processed = try anyres.preprocess(image)
        let perTile = PixelValues.channels * processed.height * processed.width
        let tiles = try (0..<processed.patchCount).map { index in
            let values = Array(processed.values[(index * perTile)..<((index + 1) * perTile)])
            return try visionTowerTile(PixelValues(height: processed.height, width: processed.width, values: values), side: tileSide, source: source)
        }
        let grid = anyres.featureGrid(
            originalHeight: processed.imageHeight, originalWidth: processed.imageWidth, bestResolution: processed.bestResolution,
            visionPatchSize: visionPatchSize)
        return ImageInput(tiles: tiles, grid: grid)
    }

    /// Only an empty image makes the processor's count throw, and decoded images are never empty.
    public func imageTokenCount(height: Int, width: Int) -> Int {
        (try? anyres.imageTokenCount(originalHeight: height, originalWidth: width, visionPatchSize: visionPatchSize)) ?? tokensPerTile
    }

    public var drawsKeptTokens: Bool { false }

    public func keptTokenView(_ image: RGBImage) throws -> (view: RGBImage, grid: TokenGrid)? { nil }
}
