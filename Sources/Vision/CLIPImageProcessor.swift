/// One image's `pixel_values` as transformers returns them: float32, channel-first.
public struct PixelValues: Equatable, Sendable {
    public static let channels = 3
    public let height: Int
    public let width: Int
    public let values: [Float]  // (3, height, width)

    public init(height: Int, width: Int, values: [Float]) {
        precondition(values.count == Self.channels * height * width, "values do not match 3×\(height)×\(width)")
        self.height = height
        self.width = width
        self.values = values
    }
}

/// Why an image could not be preprocessed.
public struct ImageProcessingError: Error, Equatable, CustomStringConvertible, Sendable {
    public let reason: String

    public var description: String { "cannot preprocess the image: \(reason)" }
}

/// transformers' `CLIPImageProcessor` as its PIL backend (`CLIPImageProcessorPil`) runs it: resize with
/// `PIL.Image.resize`, center crop, rescale, normalize. That backend is the reference because it is what
/// `AutoImageProcessor` returns when torchvision is absent, and what `use_fast=False`/`backend="pil"` select.
/// The torchvision backend resizes float tensors without PIL's 8-bit rounding between the two passes, so its
/// pixel_values can differ slightly from these.
public struct CLIPImageProcessor: Sendable {
    public var config: CLIPImageProcessorConfig
    /// LLaVA's original `image_aspect_ratio == "pad"` mode: `expand2square` before the processor.
    public var padsToSquare: Bool

    public init(config: CLIPImageProcessorConfig, padsToSquare: Bool = false) {
        self.config = config
        self.padsToSquare = padsToSquare
    }

    /// The colour LLaVA pads with: `tuple(int(x * 255) for x in image_processor.image_mean)`.
    public var paddingColor: RGBColor {
        // Clamped before converting so that an absurd mean in a config cannot trap; int() truncates.
        let levels = config.imageMean.map { UInt8(min(max($0 * 255, 0), 255).rounded(.towardZero)) }
        return (levels[0], levels[1], levels[2])
    }

    /// The size `resize` produces for an image of the given size (transformers' PIL backend `resize`:
    /// `get_resize_output_image_size` for a shortest edge, `get_size_with_aspect_ratio` when a longest edge
    /// is also given).
    public func resizedSize(height: Int, width: Int) -> (height: Int, width: Int) {
        switch config.size {
        case .exactly(let targetHeight, let targetWidth):
            return (targetHeight, targetWidth)
        case .shortestEdge(let shortest, nil):
            let (short, long) = width <= height ? (width, height) : (height, width)
            // Python: int(size * long / short), a true division of ints, then truncation.
            let newLong = Int(Double(shortest * long) / Double(short))
            return width <= height ? (newLong, shortest) : (shortest, newLong)
        case .shortestEdge(let shortest, let longest?):
            var size = shortest
            var rawSize: Double?
            let minimumSide = Double(min(height, width))
            let maximumSide = Double(max(height, width))
            if maximumSide / minimumSide * Double(size) > Double(longest) {
                let raw = Double(longest) * minimumSide / maximumSide
                rawSize = raw
                size = Int(raw.rounded(.toNearestOrEven))  // Python's round()
            }
            if (height <= width && height == size) || (width <= height && width == size) {
                return (height, width)
            }
            if width < height {
                let newHeight = rawSize.map { Int($0 * Double(height) / Double(width)) }
                    ?? Int(Double(size * height) / Double(width))
                return (newHeight, size)
            }
            let newWidth = rawSize.map { Int($0 * Double(width) / Double(height)) }
                ?? Int(Double(size * width) / Double(height))
            return (size, newWidth)
        }
    }

    /// The 8-bit image after padding, resizing and cropping: what rescale and normalize then turn into floats.
    public func geometricallyTransformed(_ image: RGBImage) throws(ImageProcessingError) -> RGBImage {
        guard image.width > 0, image.height > 0 else {
            throw ImageProcessingError(reason: "the image is empty (\(image.width)×\(image.height))")
        }
        var working = padsToSquare ? image.expandedToSquare(background: paddingColor) : image
        if config.doResize {
            let target = resizedSize(height: working.height, width: working.width)
            // A sliver image under a shortest-edge rule can ask for an enormous long side (PIL would allocate it).
            let (targetPixels, overflow) = target.height.multipliedReportingOverflow(by: target.width)
            guard target.height > 0, target.width > 0, !overflow, targetPixels <= ImageDecodingOptions.defaultMaxPixelCount else {
                throw ImageProcessingError(
                    reason: "resizing \(working.width)×\(working.height) with \(config.size) gives \(target.width)×\(target.height)")
            }
            working = working.resized(width: target.width, height: target.height, filter: config.resample)
        }
        if config.doCenterCrop {
            working = working.centerCropped(height: config.cropHeight, width: config.cropWidth)
        }
        return working
    }

    /// `processor(images=image)["pixel_values"][0]` for an image transformers' `load_image` would produce.
    public func preprocess(_ image: RGBImage) throws(ImageProcessingError) -> PixelValues {
        let cropped = try geometricallyTransformed(image)
        return pixelValues(from: cropped)
    }

    func pixelValues(from image: RGBImage) -> PixelValues {
        rescaledAndNormalized(
            image, rescaleFactor: config.doRescale ? config.rescaleFactor : nil,
            meanAndStd: config.doNormalize ? (config.imageMean, config.imageStd) : nil)
    }
}

/// Rescale and normalize with numpy's types, as transformers' PIL backends do: the rescale multiplies
/// in float64 and stores float32; the normalization subtracts and divides in float32 with float32
/// copies of mean and std. Doing the same operations in the same precision gives the same bits.
func rescaledAndNormalized(_ image: RGBImage, rescaleFactor: Double?, meanAndStd: (mean: [Double], std: [Double])?) -> PixelValues {
    let planeSize = image.width * image.height
    var values = [Float](repeating: 0, count: PixelValues.channels * planeSize)  // (3, height, width)
    let mean = meanAndStd?.mean.map { Float($0) }  // (3)
    let standardDeviation = meanAndStd?.std.map { Float($0) }  // (3)
    image.pixels.withUnsafeBufferPointer { pixels in
        values.withUnsafeMutableBufferPointer { output in
            for channel in 0..<PixelValues.channels {
                for pixel in 0..<planeSize {
                    let level = pixels[pixel * 3 + channel]
                    var value = rescaleFactor.map { Float(Double(level) * $0) } ?? Float(level)
                    if let mean, let standardDeviation {
                        value = (value - mean[channel]) / standardDeviation[channel]
                    }
                    output[channel * planeSize + pixel] = value
                }
            }
        }
    }
    return PixelValues(height: image.height, width: image.width, values: values)
}
