/// One 8-bit RGB pixel value.
public typealias RGBColor = (red: UInt8, green: UInt8, blue: UInt8)

/// An 8-bit RGB image: rows top to bottom, pixels left to right, channels interleaved (what
/// `numpy.asarray(pil_image.convert("RGB"))` holds).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]  // (height, width, 3)

    /// `pixels` must hold exactly `height * width * 3` bytes, row-major, RGB interleaved.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "image dimensions must not be negative")
        precondition(pixels.count == width * height * 3, "pixel buffer does not match \(width)×\(height)×3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image of one colour.
    public init(width: Int, height: Int, filledWith color: RGBColor) {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)  // (height, width, 3)
        for index in stride(from: 0, to: pixels.count, by: 3) {
            pixels[index] = color.red
            pixels[index + 1] = color.green
            pixels[index + 2] = color.blue
        }
        self.init(width: width, height: height, pixels: pixels)
    }

    /// The red, green and blue values of the pixel at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> RGBColor {
        let offset = (y * width + x) * 3
        return (pixels[offset], pixels[offset + 1], pixels[offset + 2])
    }
}

extension RGBImage {
    /// Builds an image whose pixel (x, y) is this image's pixel `source(x, y)`; the geometric operations
    /// below differ only in that mapping.
    func remapped(width newWidth: Int, height newHeight: Int, source: (Int, Int) -> (x: Int, y: Int)) -> RGBImage {
        var output = [UInt8](repeating: 0, count: newWidth * newHeight * 3)  // (newHeight, newWidth, 3)
        pixels.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { result in
                for y in 0..<newHeight {
                    for x in 0..<newWidth {
                        let (sourceX, sourceY) = source(x, y)
                        let from = (sourceY * width + sourceX) * 3
                        let to = (y * newWidth + x) * 3
                        result[to] = input[from]
                        result[to + 1] = input[from + 1]
                        result[to + 2] = input[from + 2]
                    }
                }
            }
        }
        return RGBImage(width: newWidth, height: newHeight, pixels: output)
    }

    /// The image as PIL's `Image.transpose(method)` returns it for the method EXIF `orientation` calls for,
    /// i.e. what `PIL.ImageOps.exif_transpose` does. Orientation 1 returns the image unchanged.
    public func applyingOrientation(_ orientation: ExifOrientation) -> RGBImage {
        let lastX = width - 1
        let lastY = height - 1
        switch orientation {
        case .upright:
            return self
        case .mirroredHorizontally:  // PIL FLIP_LEFT_RIGHT
            return remapped(width: width, height: height) { x, y in (lastX - x, y) }
        case .rotated180:  // PIL ROTATE_180
            return remapped(width: width, height: height) { x, y in (lastX - x, lastY - y) }
        case .mirroredVertically:  // PIL FLIP_TOP_BOTTOM
            return remapped(width: width, height: height) { x, y in (x, lastY - y) }
        case .transposed:  // PIL TRANSPOSE: mirror along the main diagonal
            return remapped(width: height, height: width) { x, y in (y, x) }
        case .needsClockwiseRotation:  // PIL ROTATE_270: 270° counter-clockwise
            return remapped(width: height, height: width) { x, y in (y, lastY - x) }
        case .transversed:  // PIL TRANSVERSE: mirror along the anti-diagonal
            return remapped(width: height, height: width) { x, y in (lastX - y, lastY - x) }
        case .needsCounterClockwiseRotation:  // PIL ROTATE_90: 90° counter-clockwise
            return remapped(width: height, height: width) { x, y in (lastX - y, x) }
        }
    }

    /// LLaVA's `expand2square`: pads the shorter side with `background` so the image becomes square, the
    /// original centred (offset rounded down, as `(long - short) // 2`). Square images come back unchanged.
    public func expandedToSquare(background: RGBColor) -> RGBImage {
        if width == height {
            return self
        }
        let side = max(width, height)
        let offsetX = (side - width) / 2
        let offsetY = (side - height) / 2
        var canvas = RGBImage(width: side, height: side, filledWith: background).pixels  // (side, side, 3)
        let rowBytes = width * 3
        for y in 0..<height {
            let from = y * rowBytes
            let to = ((y + offsetY) * side + offsetX) * 3
            canvas.replaceSubrange(to..<(to + rowBytes), with: pixels[from..<(from + rowBytes)])
        }
        return RGBImage(width: side, height: side, pixels: canvas)
    }

    /// transformers' `center_crop`: the window starts at `(size - cropSize) // 2` (rounded toward minus
    /// infinity), and where the image is smaller than the crop it is first padded with zeros, the padding
    /// split with the larger half (`ceil`) before the image.
    public func centerCropped(height cropHeight: Int, width cropWidth: Int) -> RGBImage {
        precondition(cropHeight > 0 && cropWidth > 0, "crop size must be positive")
        var top = floorDivide(height - cropHeight, 2)
        var left = floorDivide(width - cropWidth, 2)
        if top >= 0, left >= 0, top + cropHeight <= height, left + cropWidth <= width {
            return remapped(width: cropWidth, height: cropHeight) { x, y in (left + x, top + y) }
        }
        // Too small along some axis: place the image on a zero canvas at least as large as the crop.
        let paddedHeight = max(cropHeight, height)
        let paddedWidth = max(cropWidth, width)
        let topPadding = (paddedHeight - height + 1) / 2
        let leftPadding = (paddedWidth - width + 1) / 2
        top += topPadding
        left += leftPadding
        var output = [UInt8](repeating: 0, count: cropHeight * cropWidth * 3)  // (cropHeight, cropWidth, 3)
        for y in 0..<cropHeight {
            let sourceY = top + y - topPadding
            guard sourceY >= 0, sourceY < height else { continue }
            for x in 0..<cropWidth {
                let sourceX = left + x - leftPadding
                guard sourceX >= 0, sourceX < width else { continue }
                let from = (sourceY * width + sourceX) * 3
                let to = (y * cropWidth + x) * 3
                output[to] = pixels[from]
                output[to + 1] = pixels[from + 1]
                output[to + 2] = pixels[from + 2]
            }
        }
        return RGBImage(width: cropWidth, height: cropHeight, pixels: output)
    }
}

/// Python's `//` for integers: rounds toward minus infinity, unlike Swift's `/`.
func floorDivide(_ dividend: Int, _ divisor: Int) -> Int {
    let quotient = dividend / divisor
    return (dividend % divisor != 0 && (dividend < 0) != (divisor < 0)) ? quotient - 1 : quotient
}
