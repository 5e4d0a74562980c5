import Foundation
import TensorCore
import Vision

/// LLaVA-1.5's image processing: CLIPImageProcessor's one (3, side, side) tile per image.
public struct LlavaImageProcessor: ImageProcessing {
    public let clip: CLIPImageProcessor
    /// The side the vision tower takes.
    public let tileSide: Int
    public let tokensPerTile: Int
    public let patchesPerSide: Int

    public func prepare(_ image: RGBImage, source: String) throws -> ImageInput {
        ImageInput(tiles: [try visionTowerTile(try clip.preprocess(image), side: tileSide, source: source)])
    }

    public func imageTokenCount(height: Int, width: Int) -> Int { tokensPerTile }

    public var drawsKeptTokens: Bool { true }

    public func keptTokenView(_ image: RGBImage) throws -> (view: RGBImage, grid: TokenGrid)? {
        (try clip.geometricallyTransformed(image), .square(patchesPerSide))
    }
}

/// One processed tile as the tower's (3, side, side) input, checked against the tower's side.
func visionTowerTile(_ processed: PixelValues, side: Int, source: String) throws -> Tensor {
    if processed.height != side || processed.width != side {
        throw PipelineError.imageSizeMismatch(file: source, width: processed.width, height: processed.height, expected: side)
    }
    return Tensor(shape: [PixelValues.channels, processed.height, processed.width], values: processed.values)
}
