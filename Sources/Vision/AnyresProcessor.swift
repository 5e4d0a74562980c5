import FileAccess
import Foundation

/// One entry of `image_grid_pinpoints`: a resolution the high-resolution grid may take, in pixels.
public struct GridResolution: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let height: Int
    public let width: Int

    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }

    public var description: String { "\(height)×\(width)" }
}

/// Why a LLaVA-NeXT preprocessor configuration was refused; `key` is the JSON key at fault.
public struct AnyresConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    public let file: String
    public let key: String
    public let reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String { "\(file): invalid LLaVA-NeXT image processor configuration: \(key): \(reason)" }
}

/// The fields of transformers' `LlavaNextImageProcessor` configuration (`preprocessor_config.json` of the
/// llava-hf llava-v1.6 checkpoints). Everything it shares with CLIP (size, crop_size, resample, rescale,
/// normalize, their defaults included: shortest edge 224, crop 224×224, bicubic, OpenAI CLIP mean and std) is
/// read by `CLIPImageProcessorConfig`; this adds `image_grid_pinpoints` and `do_pad`.
public struct AnyresProcessorConfig: Equatable, Sendable {
    /// transformers' class default, which is also what the llava-v1.6 checkpoints store.
    public static let defaultGridPinpoints = [
        GridResolution(height: 336, width: 672), GridResolution(height: 672, width: 336),
        GridResolution(height: 672, width: 672), GridResolution(height: 1008, width: 336),
        GridResolution(height: 336, width: 1008),
    ]

    public var clip: CLIPImageProcessorConfig
    public var imageGridPinpoints: [GridResolution]
    /// Pads a batch's images with all-zero patches to the largest patch count (`_pad_for_batching`).
    public var doPad: Bool

    public init(clip: CLIPImageProcessorConfig = CLIPImageProcessorConfig(),
                imageGridPinpoints: [GridResolution] = defaultGridPinpoints, doPad: Bool = true) {
        self.clip = clip
        self.imageGridPinpoints = imageGridPinpoints
        self.doPad = doPad
    }

    /// The side of the square tiles the padded image is cut into: transformers' `patch_size` in `_preprocess`,
    /// `crop_size["height"]` (always present here, since crop_size has a default).
    public var tileSide: Int { clip.cropHeight }

    /// The size the whole image is squashed to for the first patch: `size` as (height, width), or a square of
    /// `shortest_edge`.
    public var baseImageSize: (height: Int, width: Int) {
        switch clip.size {
        case .exactly(let height, let width): return (height, width)
        case .shortestEdge(let shortest, _): return (shortest, shortest)
        }
    }

    /// Reads `preprocessor_config.json`, or a `processor_config.json` nesting it under `"image_processor"`.
    public static func load(contentsOf url: URL) throws(AnyresConfigError) -> AnyresProcessorConfig {
        switch readWholeFile(atPath: url.path) {
        case .success(let bytes):
            return try parse(Data(bytes), file: url.path)
        case .failure(let error):
            throw AnyresConfigError(file: url.path, key: "(file)", reason: "cannot read the file: \(error.reason)")
        }
    }

    /// Parses either layout from JSON bytes; `file` only names the source in errors.
    public static func parse(_ json: Data, file: String = "<memory>") throws(AnyresConfigError) -> AnyresProcessorConfig {
        let root: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
                throw AnyresConfigError(file: file, key: "(root)", reason: "the configuration is not a JSON object")
            }
            root = object
        } catch let error as AnyresConfigError {
            throw error
        } catch {
            throw AnyresConfigError(file: file, key: "(root)", reason: "not valid JSON: \(describeFoundationError(error))")
        }
        let fields = (root["image_processor"] as? [String: Any]) ?? root

        // Positivity is checked here so that the error names the key; the CLIP reader then checks the forms.
        for key in ["size", "crop_size"] {
            try requirePositiveSizes(fields[key], key: key, file: file)
        }
        let clip: CLIPImageProcessorConfig
        do {
            clip = try CLIPImageProcessorConfig.parse(json, file: file)
        } catch {
            throw AnyresConfigError(file: file, key: keyNamed(in: error.reason), reason: error.reason)
        }

        var config = AnyresProcessorConfig(clip: clip)
        if let pinpoints = fields["image_grid_pinpoints"], !(pinpoints is NSNull) {
            config.imageGridPinpoints = try parsePinpoints(pinpoints, file: file)
        }
        if let doPad = fields["do_pad"], !(doPad is NSNull) {
            guard let flag = doPad as? Bool else {
                throw AnyresConfigError(file: file, key: "do_pad", reason: "expected true or false, got \(doPad)")
            }
            config.doPad = flag
        }
        return config
    }

    /// `[[height, width], ...]`, non-empty, every side positive.
    static func parsePinpoints(_ value: Any, file: String) throws(AnyresConfigError) -> [GridResolution] {
        let key = "image_grid_pinpoints"
        guard let entries = value as? [Any] else {
            throw AnyresConfigError(file: file, key: key, reason: "expected a list of [height, width] pairs, got \(value)")
        }
        guard !entries.isEmpty else {
            throw AnyresConfigError(file: file, key: key, reason: "the list of resolutions is empty")
        }
        var resolutions: [GridResolution] = []
        for (position, entry) in entries.enumerated() {
            guard let pair = entry as? [Any], pair.count == 2,
                  let height = integer(pair[0]), let width = integer(pair[1]) else {
                throw AnyresConfigError(file: file, key: key, reason: "entry \(position) is not a [height, width] pair of integers: \(entry)")
            }
            guard height > 0, width > 0, height <= largestSide, width <= largestSide else {
                throw AnyresConfigError(
                    file: file, key: key, reason: "entry \(position) must have sides in 1...\(largestSide), got [\(height), \(width)]")
            }
            resolutions.append(GridResolution(height: height, width: width))
        }
        return resolutions
    }

    /// The same bound `CLIPImageProcessorConfig` puts on sizes: beyond it only absurd allocations follow.
    static let largestSide = 65_536

    /// A JSON number with an integral value (JSON does not distinguish 336 from 336.0).
    private static func integer(_ value: Any) -> Int? {
        guard let number = value as? NSNumber, !(value is Bool && !(value is Int)) else { return nil }
        let double = number.doubleValue
        guard double == double.rounded(), abs(double) <= Double(Int32.max) else { return nil }
        return Int(double)
    }

    private static func requirePositiveSizes(_ value: Any?, key: String, file: String) throws(AnyresConfigError) {
        guard let value, !(value is NSNull) else { return }
        let numbers: [Any]
        if let dictionary = value as? [String: Any] {
            numbers = Array(dictionary.values)
        } else if let list = value as? [Any] {
            numbers = list
        } else {
            numbers = [value]
        }
        for number in numbers {
            if let side = integer(number), side <= 0 {
                throw AnyresConfigError(file: file, key: key, reason: "sizes must be positive, got \(value)")
            }
        }
    }

    /// The key a `CLIPImageProcessorConfig` error is about ("... at crop_size"), or the whole processor.
    private static func keyNamed(in reason: String) -> String {
        let known = ["crop_size", "size", "resample", "image_mean", "image_std", "rescale_factor", "do_resize",
                     "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb", "default_to_square"]
        // describeDecodingError quotes the key path: "'resample' is not an integer", "'size.height': ...".
        for key in known where reason.contains("'\(key)'") || reason.contains("'\(key).") || reason.hasPrefix("\(key) ") {
            return key
        }
        return "image_processor"
    }
}

/// One image's `pixel_values` from `LlavaNextImageProcessor`: the base image first, then the grid tiles row by
/// row, each rescaled and normalized.
/// LLaVA-NeXT's feature map of one image (see `AnyresProcessor.featureGrid`).
public struct AnyresFeatureGrid: Equatable, Sendable {
    /// Tiles of the best resolution's grid (the base image is apart).
    public let tileRows: Int
    public let tileColumns: Int
    /// Vision patches along each side of one tile.
    public let patchesPerTileSide: (height: Int, width: Int)
    /// Rows and columns of the whole map that survive unpadding.
    public let keptRows: Range<Int>
    public let keptColumns: Range<Int>

    public static func == (a: AnyresFeatureGrid, b: AnyresFeatureGrid) -> Bool {
        a.tileRows == b.tileRows && a.tileColumns == b.tileColumns && a.patchesPerTileSide == b.patchesPerTileSide
            && a.keptRows == b.keptRows && a.keptColumns == b.keptColumns
    }
}

public struct AnyresPixelValues: Equatable, Sendable {
    public let patchCount: Int
    public let height: Int
    public let width: Int
    public let values: [Float]  // (patches, 3, height, width)
    /// `image_sizes`: the original (height, width).
    public let imageHeight: Int
    public let imageWidth: Int
    /// The pinpoint the grid was laid out on.
    public let bestResolution: GridResolution

    public init(patchCount: Int, height: Int, width: Int, values: [Float], imageHeight: Int, imageWidth: Int,
                bestResolution: GridResolution) {
        precondition(values.count == patchCount * PixelValues.channels * height * width,
                     "values do not match \(patchCount)×3×\(height)×\(width)")
        self.patchCount = patchCount
        self.height = height
        self.width = width
        self.values = values
        self.imageHeight = imageHeight
        self.imageWidth = imageWidth
        self.bestResolution = bestResolution
    }

    /// The same image with all-zero patches appended up to `count` (transformers' `_pad_for_batching`).
    public func padded(toPatchCount count: Int) -> AnyresPixelValues {
        guard count > patchCount else { return self }
        let patchValues = PixelValues.channels * height * width
        let padding = [Float](repeating: 0, count: (count - patchCount) * patchValues)  // (extra patches, 3, height, width)
        return AnyresPixelValues(patchCount: count, height: height, width: width, values: values + padding,
                                 imageHeight: imageHeight, imageWidth: imageWidth, bestResolution: bestResolution)
    }
}

/// How the vision tower's features are selected, as `vision_feature_select_strategy` says.
public enum VisionFeatureSelectStrategy: String, Codable, Sendable {
    /// Drops the CLS feature: one token fewer per image.
    case `default`
    /// Keeps every feature.
    case full
}

/// transformers' `LlavaNextImageProcessor` with its PIL backend (`LlavaNextImageProcessorPil`), for one image:
/// pick the grid resolution, resize into it keeping the aspect ratio, pad with zeros (black, before
/// rescaling) to the resolution, cut into tiles of the crop size, put the whole image squashed to the base size
/// in front, and run every patch through CLIP's resize, center crop, rescale and normalize.
public struct AnyresProcessor: Sendable {
    public var config: AnyresProcessorConfig

    public init(config: AnyresProcessorConfig) {
        self.config = config
    }

    private var clipProcessor: CLIPImageProcessor { CLIPImageProcessor(config: config.clip) }

    /// transformers' `select_best_resolution`: the pinpoint keeping the most of the image's pixels once it is
    /// scaled to fit (never counting more than the original has), ties going to the least wasted area, then to
    /// the earliest entry.
    public static func selectBestResolution(
        height originalHeight: Int, width originalWidth: Int, among resolutions: [GridResolution]
    ) -> GridResolution? {
        var best: GridResolution?
        var maximumEffective = 0
        var minimumWasted = Int.max
        for resolution in resolutions {
            let scale = min(Double(resolution.width) / Double(originalWidth), Double(resolution.height) / Double(originalHeight))
            let downscaledWidth = Int(Double(originalWidth) * scale)
            let downscaledHeight = Int(Double(originalHeight) * scale)
            let effective = min(downscaledWidth * downscaledHeight, originalWidth * originalHeight)
            let wasted = resolution.width * resolution.height - effective
            if effective > maximumEffective || (effective == maximumEffective && wasted < minimumWasted) {
                maximumEffective = effective
                minimumWasted = wasted
                best = resolution
            }
        }
        return best
    }

    /// transformers' `get_patch_output_size`: the size that fits the image into `target` keeping its aspect
    /// ratio, the side along the tighter axis becoming the target's and the other rounded up (and capped).
    public static func fittedSize(height: Int, width: Int, into target: GridResolution) -> (height: Int, width: Int) {
        let widthScale = Double(target.width) / Double(width)
        let heightScale = Double(target.height) / Double(height)
        if widthScale < heightScale {
            return (min(Int((Double(height) * widthScale).rounded(.up)), target.height), target.width)
        }
        return (target.height, min(Int((Double(width) * heightScale).rounded(.up)), target.width))
    }

    /// The size of every patch in `pixel_values`: what CLIP's resize and center crop make of a tile.
    public var patchSize: (height: Int, width: Int) {
        var size = (height: config.tileSide, width: config.tileSide)
        if config.clip.doResize {
            size = clipProcessor.resizedSize(height: size.height, width: size.width)
        }
        if config.clip.doCenterCrop {
            size = (config.clip.cropHeight, config.clip.cropWidth)
        }
        return size
    }

    /// The 8-bit patches before CLIP's per-patch steps: the base image, then the tiles row by row.
    public func patchImages(_ image: RGBImage) throws(ImageProcessingError) -> (patches: [RGBImage], bestResolution: GridResolution) {
        guard image.width > 0, image.height > 0 else {
            throw ImageProcessingError(reason: "the image is empty (\(image.width)×\(image.height))")
        }
        guard let best = Self.selectBestResolution(height: image.height, width: image.width, among: config.imageGridPinpoints) else {
            throw ImageProcessingError(reason: "image_grid_pinpoints is empty")
        }
        let resample = config.clip.resample
        let fitted = Self.fittedSize(height: image.height, width: image.width, into: best)
        let resized = image.resized(width: fitted.width, height: fitted.height, filter: resample)

        // `_pad_for_patching` recomputes the fitted size from the resized image and splits the remainder with
        // Python's divmod, the odd pixel going after the image; the fill is 0 in the 8-bit image.
        let refitted = Self.fittedSize(height: resized.height, width: resized.width, into: best)
        let (top, extraHeight) = floorDivisionWithRemainder(best.height - refitted.height, 2)
        let (left, extraWidth) = floorDivisionWithRemainder(best.width - refitted.width, 2)
        let padded = resized.paddedWithZeros(top: top, bottom: top + extraHeight, left: left, right: left + extraWidth)

        let side = config.tileSide
        var patches: [RGBImage] = []
        let base = config.baseImageSize
        patches.append(image.resized(width: base.width, height: base.height, filter: resample))
        for top in stride(from: 0, to: padded.height, by: side) {
            for left in stride(from: 0, to: padded.width, by: side) {
                patches.append(padded.window(top: top, left: left, height: side, width: side))
            }
        }
        return (patches, best)
    }

    /// `processor(images=image)["pixel_values"][0]` and `image_sizes[0]`.
    public func preprocess(_ image: RGBImage) throws(ImageProcessingError) -> AnyresPixelValues {
        let (patches, best) = try patchImages(image)
        let clip = clipProcessor
        var values: [Float] = []  // (patches, 3, height, width)
        var patchHeight = 0
        var patchWidth = 0
        for (index, patch) in patches.enumerated() {
            let transformed = try clip.geometricallyTransformed(patch)
            if index == 0 {
                (patchHeight, patchWidth) = (transformed.height, transformed.width)
                values.reserveCapacity(patches.count * PixelValues.channels * patchHeight * patchWidth)
            } else if transformed.height != patchHeight || transformed.width != patchWidth {
                throw ImageProcessingError(
                    reason: "patch \(index) is \(transformed.width)×\(transformed.height) but the first is "
                        + "\(patchWidth)×\(patchHeight); without a center crop the patches cannot be stacked")
            }
            values.append(contentsOf: clip.pixelValues(from: transformed).values)
        }
        return AnyresPixelValues(patchCount: patches.count, height: patchHeight, width: patchWidth, values: values,
                                 imageHeight: image.height, imageWidth: image.width, bestResolution: best)
    }

    /// Several images as one call returns them: with `do_pad`, every image padded with zero patches to the
    /// largest patch count.
    public func preprocess(_ images: [RGBImage]) throws(ImageProcessingError) -> [AnyresPixelValues] {
        var results: [AnyresPixelValues] = []
        for image in images {
            results.append(try preprocess(image))
        }
        guard config.doPad, let largest = results.map(\.patchCount).max() else { return results }
        return results.map { $0.padded(toPatchCount: largest) }
    }

    /// How many `<image>` tokens `LlavaNextProcessor` expands one image to (`_get_number_of_features`, less one
    /// for the "default" feature strategy): the grid's features with the padding rows or columns removed, one
    /// newline token per remaining row, and the base image's features.
    /// - Parameters:
    ///   - visionPatchSize: the vision tower's `patch_size` (14 for CLIP ViT-L/14-336).
    ///   - additionalImageTokens: `num_additional_image_tokens` (1 in llava-hf's processor configs: the CLS).
    public func imageTokenCount(
        originalHeight: Int, originalWidth: Int, visionPatchSize: Int = 14, additionalImageTokens: Int = 1,
        strategy: VisionFeatureSelectStrategy = .default
    ) throws(ImageProcessingError) -> Int {
        guard originalHeight > 0, originalWidth > 0 else {
            throw ImageProcessingError(reason: "the image is empty (\(originalWidth)×\(originalHeight))")
        }
        guard visionPatchSize > 0 else {
            throw ImageProcessingError(reason: "visionPatchSize must be positive, got \(visionPatchSize)")
        }
        guard let best = Self.selectBestResolution(height: originalHeight, width: originalWidth, among: config.imageGridPinpoints) else {
            throw ImageProcessingError(reason: "image_grid_pinpoints is empty")
        }
        let grid = featureGrid(originalHeight: originalHeight, originalWidth: originalWidth, bestResolution: best, visionPatchSize: visionPatchSize)
        let unpaddedFeatures = grid.keptRows.count * grid.keptColumns.count
        let newlineFeatures = grid.keptRows.count
        let baseFeatures = grid.patchesPerTileSide.height * grid.patchesPerTileSide.width + additionalImageTokens
        let total = unpaddedFeatures + newlineFeatures + baseFeatures
        return strategy == .default ? total - 1 : total
    }

    /// Where the tiles' features sit once LLaVA-NeXT lays them out (`pack_image_features`): the
    /// tiles of the `bestResolution` grid side by side as one feature map of
    /// (rows · patches per tile side) × (columns · patches per tile side) positions, of which
    /// `unpad_image` keeps `keptRows` × `keptColumns` (the image's own aspect ratio, padding removed).
    /// The model and the processor's token count both follow it.
    public func featureGrid(
        originalHeight: Int, originalWidth: Int, bestResolution best: GridResolution, visionPatchSize: Int
    ) -> AnyresFeatureGrid {
        let (height, width) = patchSize  // pixel_values' last two dimensions
        let tiles = (rows: best.height / height, columns: best.width / width)
        let perTile = (height: height / visionPatchSize, width: width / visionPatchSize)
        let currentHeight = perTile.height * tiles.rows
        let currentWidth = perTile.width * tiles.columns
        var keptRows = 0..<currentHeight, keptColumns = 0..<currentWidth
        let originalAspectRatio = Double(originalWidth) / Double(originalHeight)
        let currentAspectRatio = Double(currentWidth) / Double(currentHeight)
        if originalAspectRatio > currentAspectRatio {
            let newHeight = Self.truncatedAfterRoundingTo7Digits(Double(originalHeight) * (Double(currentWidth) / Double(originalWidth)))
            let padding = floorDivide(currentHeight - newHeight, 2)
            keptRows = padding..<(currentHeight - padding)
        } else {
            let newWidth = Self.truncatedAfterRoundingTo7Digits(Double(originalWidth) * (Double(currentHeight) / Double(originalHeight)))
            let padding = floorDivide(currentWidth - newWidth, 2)
            keptColumns = padding..<(currentWidth - padding)
        }
        return AnyresFeatureGrid(
            tileRows: tiles.rows, tileColumns: tiles.columns, patchesPerTileSide: perTile, keptRows: keptRows, keptColumns: keptColumns)
    }

    /// Python's `int(round(value, 7))`: rounding to 7 decimals absorbs the float error of the scaling (so
    /// 35.99999999 counts as 36) before truncating.
    static func truncatedAfterRoundingTo7Digits(_ value: Double) -> Int {
        Int(((value * 1e7).rounded(.toNearestOrEven) / 1e7).rounded(.towardZero))
    }
}

/// Python's `divmod` for a non-negative divisor: quotient rounded toward minus infinity, remainder ≥ 0.
private func floorDivisionWithRemainder(_ dividend: Int, _ divisor: Int) -> (quotient: Int, remainder: Int) {
    let quotient = floorDivide(dividend, divisor)
    return (quotient, dividend - quotient * divisor)
}

extension RGBImage {
    /// `numpy.pad(image, ..., constant_values=0)`: the image surrounded by black borders of the given widths.
    /// Negative widths (which numpy refuses) are treated as zero.
    public func paddedWithZeros(top: Int, bottom: Int, left: Int, right: Int) -> RGBImage {
        let (top, bottom, left, right) = (max(top, 0), max(bottom, 0), max(left, 0), max(right, 0))
        if top == 0, bottom == 0, left == 0, right == 0 {
            return self
        }
        let newWidth = width + left + right
        let newHeight = height + top + bottom
        var canvas = [UInt8](repeating: 0, count: newWidth * newHeight * 3)  // (newHeight, newWidth, 3)
        let rowBytes = width * 3
        for y in 0..<height {
            let from = y * rowBytes
            let to = ((y + top) * newWidth + left) * 3
            canvas.replaceSubrange(to..<(to + rowBytes), with: pixels[from..<(from + rowBytes)])
        }
        return RGBImage(width: newWidth, height: newHeight, pixels: canvas)
    }

    /// `image[..., top:top + height, left:left + width]`: numpy slicing, so a window running past the right
    /// or bottom edge is cut short there.
    public func window(top: Int, left: Int, height windowHeight: Int, width windowWidth: Int) -> RGBImage {
        let firstRow = min(max(top, 0), height)
        let firstColumn = min(max(left, 0), width)
        let rows = min(firstRow + max(windowHeight, 0), height) - firstRow
        let columns = min(firstColumn + max(windowWidth, 0), width) - firstColumn
        return remapped(width: columns, height: rows) { x, y in (firstColumn + x, firstRow + y) }
    }
}
