import FileAccess
import Foundation

/// The fields of a Qwen2-VL / Qwen2.5-VL image processor configuration (`preprocessor_config.json` as
/// the hub ships it, with `min_pixels` / `max_pixels`, or the `image_processor` object of the
/// `processor_config.json` that transformers 5 writes, with `size.shortest_edge` / `longest_edge`).
/// Absent keys take transformers' `Qwen2VLImageProcessor` defaults.
public struct Qwen2VLImageProcessorConfig: Equatable, Sendable, Decodable {
    public var doResize = true
    /// The fewest and most pixels of the resized image (`size.shortest_edge` / `longest_edge`;
    /// `min_pixels` / `max_pixels` override them, as in transformers).
    public var minPixels = 56 * 56
    public var maxPixels = 28 * 28 * 1280
    public var resample = ResamplingFilter.bicubic
    public var doRescale = true
    public var rescaleFactor = 1.0 / 255.0
    public var doNormalize = true
    public var imageMean = CLIPImageProcessorConfig.openAICLIPMean           // (3)
    public var imageStd = CLIPImageProcessorConfig.openAICLIPStandardDeviation  // (3)
    /// The vision tower's patch side, its frames per temporal patch, and the side of the square of
    /// patches the merger turns into one language-model token.
    public var patchSize = 14
    public var temporalPatchSize = 2
    public var mergeSize = 2

    public init() {}

    enum CodingKeys: String, CodingKey {
        case doResize = "do_resize", size, minPixels = "min_pixels", maxPixels = "max_pixels", resample
        case doRescale = "do_rescale", rescaleFactor = "rescale_factor", doNormalize = "do_normalize"
        case imageMean = "image_mean", imageStd = "image_std"
        case patchSize = "patch_size", temporalPatchSize = "temporal_patch_size", mergeSize = "merge_size"
    }

    private struct PixelRange: Decodable {
        let shortestEdge: Int?, longestEdge: Int?
        enum CodingKeys: String, CodingKey { case shortestEdge = "shortest_edge", longestEdge = "longest_edge" }
    }

    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func fail(_ key: CodingKeys, _ reason: String) -> DecodingError {
            .dataCorruptedError(forKey: key, in: c, debugDescription: "\(key.stringValue) \(reason)")
        }
        doResize = try c.decodeIfPresent(Bool.self, forKey: .doResize) ?? doResize
        if let range = try c.decodeIfPresent(PixelRange.self, forKey: .size) {
            minPixels = range.shortestEdge ?? minPixels
            maxPixels = range.longestEdge ?? maxPixels
        }
        minPixels = try c.decodeIfPresent(Int.self, forKey: .minPixels) ?? minPixels
        maxPixels = try c.decodeIfPresent(Int.self, forKey: .maxPixels) ?? maxPixels
        if let code = try c.decodeIfPresent(Int.self, forKey: .resample) {
            guard let filter = ResamplingFilter(rawValue: code) else { throw fail(.resample, "\(code) is not a PIL filter (1 to 5)") }
            resample = filter
        }
        doRescale = try c.decodeIfPresent(Bool.self, forKey: .doRescale) ?? doRescale
        rescaleFactor = try c.decodeIfPresent(Double.self, forKey: .rescaleFactor) ?? rescaleFactor
        doNormalize = try c.decodeIfPresent(Bool.self, forKey: .doNormalize) ?? doNormalize
        imageMean = try c.decodeIfPresent([Double].self, forKey: .imageMean) ?? imageMean
        imageStd = try c.decodeIfPresent([Double].self, forKey: .imageStd) ?? imageStd
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? patchSize
        temporalPatchSize = try c.decodeIfPresent(Int.self, forKey: .temporalPatchSize) ?? temporalPatchSize
        mergeSize = try c.decodeIfPresent(Int.self, forKey: .mergeSize) ?? mergeSize
        if imageMean.count != 3 { throw fail(.imageMean, "needs 3 values (one per RGB channel), got \(imageMean.count)") }
        if imageStd.count != 3 || imageStd.contains(0) { throw fail(.imageStd, "needs 3 values, none 0, got \(imageStd)") }
        for (key, value) in [(CodingKeys.patchSize, patchSize), (.temporalPatchSize, temporalPatchSize), (.mergeSize, mergeSize)]
        where !(1...1024).contains(value) {
            throw fail(key, "must be between 1 and 1024, got \(value)")
        }
        let largest = ImageDecodingOptions.defaultMaxPixelCount
        if !(1...largest).contains(minPixels) { throw fail(.minPixels, "(size.shortest_edge) must be between 1 and \(largest), got \(minPixels)") }
        if !(minPixels...largest).contains(maxPixels) {
            throw fail(.maxPixels, "(size.longest_edge) must be between min_pixels (\(minPixels)) and \(largest), got \(maxPixels)")
        }
    }

    /// Reads either layout; errors name the file.
    public static func load(contentsOf url: URL) throws(ImageProcessorConfigError) -> Qwen2VLImageProcessorConfig {
        switch readWholeFile(atPath: url.path) {
        case .success(let bytes):
            do {
                return try JSONDecoder().decode(ConfigFileLayout<Qwen2VLImageProcessorConfig>.self, from: Data(bytes)).config
            } catch {
                throw ImageProcessorConfigError(file: url.path, reason: describeDecodingError(error))
            }
        case .failure(let error):
            throw ImageProcessorConfigError(file: url.path, reason: "cannot read the file: \(error.reason)")
        }
    }
}

/// One image as Qwen2-VL's vision tower takes it: `image_grid_thw` and the patch rows of `pixel_values`.
public struct Qwen2VLPixelValues: Equatable, Sendable {
    /// Frames (1 for an image), and patch rows and columns of the resized image.
    public let gridT: Int, gridH: Int, gridW: Int
    /// Values per patch row: channels × temporal patch × patch × patch.
    public let patchDimension: Int
    /// (gridT·gridH·gridW, patchDimension): patches in merge order (each `mergeSize` × `mergeSize`
    /// square of patches consecutive), every value (channel, frame, y, x) within a row.
    public let values: [Float]
}

/// transformers' `Qwen2VLImageProcessor` as its PIL backend runs it: `smart_resize` to multiples of
/// patch × merge between `minPixels` and `maxPixels`, `PIL.Image.resize`, rescale, normalize, then
/// the patch rows (an image is its own second frame).
public struct Qwen2VLImageProcessor: Sendable {
    public var config: Qwen2VLImageProcessorConfig

    public init(config: Qwen2VLImageProcessorConfig) { self.config = config }

    /// transformers' `smart_resize`: the nearest multiples of `factor` (Python's round, half to
    /// even), scaled down to `maxPixels` or up to `minPixels` keeping the aspect ratio.
    public static func smartResize(
        height: Int, width: Int, factor: Int, minPixels: Int, maxPixels: Int
    ) throws(ImageProcessingError) -> (height: Int, width: Int) {
        guard height > 0, width > 0 else { throw ImageProcessingError(reason: "the image is empty (\(width)×\(height))") }
        let ratio = Double(max(height, width)) / Double(min(height, width))
        guard ratio <= 200 else {
            throw ImageProcessingError(reason: "\(width)×\(height): the aspect ratio must be at most 200, got \(ratio)")
        }
        let (h, w, f) = (Double(height), Double(width), Double(factor))
        var resizedHeight = Int((h / f).rounded(.toNearestOrEven)) * factor
        var resizedWidth = Int((w / f).rounded(.toNearestOrEven)) * factor
        if resizedHeight * resizedWidth > maxPixels {
            let beta = (h * w / Double(maxPixels)).squareRoot()
            resizedHeight = max(factor, Int((h / beta / f).rounded(.down)) * factor)
            resizedWidth = max(factor, Int((w / beta / f).rounded(.down)) * factor)
        } else if resizedHeight * resizedWidth < minPixels {
            let beta = (Double(minPixels) / (h * w)).squareRoot()
            resizedHeight = Int((h * beta / f).rounded(.up)) * factor
            resizedWidth = Int((w * beta / f).rounded(.up)) * factor
        }
        return (resizedHeight, resizedWidth)
    }

    /// `processor(images=image)`: `pixel_values` and `image_grid_thw` for one image.
    public func preprocess(_ image: RGBImage) throws(ImageProcessingError) -> Qwen2VLPixelValues {
        let factor = config.patchSize * config.mergeSize
        var working = image
        if config.doResize {
            let target = try Self.smartResize(
                height: image.height, width: image.width, factor: factor, minPixels: config.minPixels, maxPixels: config.maxPixels)
            guard target.height * target.width <= ImageDecodingOptions.defaultMaxPixelCount else {
                throw ImageProcessingError(reason: "resizing \(image.width)×\(image.height) gives \(target.width)×\(target.height)")
            }
            working = image.resized(width: target.width, height: target.height, filter: config.resample)
        }
        guard working.height % factor == 0, working.width % factor == 0 else {
            throw ImageProcessingError(reason: "\(working.width)×\(working.height) is not a multiple of patch × merge (\(factor)); enable do_resize")
        }
        let planes = rescaledAndNormalized(
            working, rescaleFactor: config.doRescale ? config.rescaleFactor : nil,
            meanAndStd: config.doNormalize ? (config.imageMean, config.imageStd) : nil)  // (3, height, width)
        return patchRows(planes)
    }

    /// numpy's reshape (3, H/(m·p), m, p, W/(m·p), m, p) → transpose to (block row, block column,
    /// row in block, column in block, channel, y, x), each patch repeated over the temporal axis.
    func patchRows(_ planes: PixelValues) -> Qwen2VLPixelValues {
        let (patch, merge, frames) = (config.patchSize, config.mergeSize, config.temporalPatchSize)
        let gridH = planes.height / patch, gridW = planes.width / patch
        let channels = PixelValues.channels
        let patchDimension = channels * frames * patch * patch
        var values = [Float](repeating: 0, count: gridH * gridW * patchDimension)  // (gridH·gridW, 3·frames·patch·patch)
        var row = 0
        for blockRow in 0..<(gridH / merge) {
            for blockColumn in 0..<(gridW / merge) {
                for rowInBlock in 0..<merge {
                    for columnInBlock in 0..<merge {
                        let top = (blockRow * merge + rowInBlock) * patch
                        let left = (blockColumn * merge + columnInBlock) * patch
                        var offset = row * patchDimension
                        for channel in 0..<channels {
                            for _ in 0..<frames {
                                for y in 0..<patch {
                                    let source = (channel * planes.height + top + y) * planes.width + left
                                    for x in 0..<patch {
                                        values[offset] = planes.values[source + x]
                                        offset += 1
                                    }
                                }
                            }
                        }
                        row += 1
                    }
                }
            }
        }
        return Qwen2VLPixelValues(gridT: 1, gridH: gridH, gridW: gridW, patchDimension: patchDimension, values: values)
    }
}
