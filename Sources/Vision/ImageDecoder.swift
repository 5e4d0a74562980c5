import FileAccess
import Foundation

/// What to do with transparency (an alpha channel, or a PNG tRNS chunk) when flattening to RGB. The three
/// cases are the three things transformers can end up feeding a model; they differ only for PNGs with
/// transparency.
public enum AlphaHandling: Sendable, Equatable {
    /// `PIL.Image.convert("RGB")`: alpha and tRNS are dropped. These are exactly the pixels transformers'
    /// `load_image` returns.
    case discard
    /// What an image processor sees when given `load_image`'s result (the path of every pipeline that loads
    /// from a path or URL): alpha channels and per-entry palette alpha are gone, but PIL keeps a tRNS colour
    /// key (an RGB or grey key, or a palette's single fully transparent entry, as a colour) in `image.info`
    /// through `convert("RGB")`, and transformers 5's `convert_to_rgb` then composites the pixels of that
    /// colour over white. Assumes `do_convert_rgb`, which CLIP and LLaVA configurations set.
    case loadImageThenProcessor
    /// What an image processor makes of a PIL image that still has its transparency, e.g.
    /// `processor(images=Image.open(path))`: `convert_to_rgb` composites it over opaque white with PIL's
    /// `alpha_composite` arithmetic. Assumes `do_convert_rgb`.
    case compositeOverWhite
}

public struct ImageDecodingOptions: Sendable, Equatable {
    /// Twice PIL's `Image.MAX_IMAGE_PIXELS` (89,478,485): PIL only warns between the two and raises
    /// `DecompressionBombError` above twice the limit, so this refuses exactly what PIL refuses. At the limit
    /// the decoded RGB buffer is about 537 MB; lower it where memory is tighter.
    public static let defaultMaxPixelCount = 2 * 89_478_485

    /// Images whose header claims more than this many pixels are refused before any pixel buffer exists.
    public var maxPixelCount: Int
    /// Image files larger than this are refused before they are read (2 GiB: more than an uncompressed
    /// 16-bit RGBA PNG at the default pixel limit).
    public var maxFileBytes: Int = 1 << 31
    /// Rotate/flip according to the EXIF (or XMP) orientation, as `PIL.ImageOps.exif_transpose` does
    /// inside transformers' `load_image`.
    public var appliesExifOrientation: Bool
    /// The default reproduces `load_image` followed by the image processor, the usual way to a model.
    public var alphaHandling: AlphaHandling

    public init(
        maxPixelCount: Int = ImageDecodingOptions.defaultMaxPixelCount,
        appliesExifOrientation: Bool = true,
        alphaHandling: AlphaHandling = .loadImageThenProcessor
    ) {
        self.maxPixelCount = maxPixelCount
        self.appliesExifOrientation = appliesExifOrientation
        self.alphaHandling = alphaHandling
    }
}

/// Decodes PNG and JPEG files into the RGB pixels transformers works on: `load_image`'s
/// `PIL.ImageOps.exif_transpose` and `convert("RGB")`, with transparency treated as `AlphaHandling` says.
public enum ImageDecoder {
    public static func decode(
        contentsOf url: URL, options: ImageDecodingOptions = ImageDecodingOptions()
    ) throws(ImageError) -> RGBImage {
        let file = url.path
        func read(_ result: Result<[UInt8], FileReadError>) throws(ImageError) -> [UInt8] {
            switch result {
            case .success(let bytes): return bytes
            case .failure(let error): throw ImageError(file: file, reason: .unreadable(error.reason))
            }
        }
        // Refuse what is not a regular file (a FIFO would block), is too large, or does not start
        // like a PNG or JPEG, before reading the whole file.
        switch regularFileSize(atPath: file) {
        case .success(let size) where size > options.maxFileBytes:
            throw ImageError(file: file, reason: .fileTooLarge(bytes: size, limit: options.maxFileBytes))
        case .success: break
        case .failure(let error): throw ImageError(file: file, reason: .unreadable(error.reason))
        }
        _ = try ImageFormat.decodable(read(readFileStart(atPath: file, count: ImageFormat.sniffedBytes)), file: file)
        return try decode(read(readWholeFile(atPath: file)), file: file, options: options)
    }

    /// Decodes an encoded image held in memory; `file` only names it in errors.
    public static func decode(
        _ encoded: [UInt8], file: String = "<memory>", options: ImageDecodingOptions = ImageDecodingOptions()
    ) throws(ImageError) -> RGBImage {
        let decoded: DecodedImage
        switch try ImageFormat.decodable(encoded, file: file) {
        case .png:
            decoded = try PNGDecoder.decode(encoded, file: file, options: options)
        default:
            decoded = try JPEGDecoder.decode(encoded, file: file, options: options)
        }
        var image = decoded.samples.flattenedToRGB(compositingAlpha: options.alphaHandling == .compositeOverWhite)
        if options.alphaHandling == .loadImageThenProcessor, let key = decoded.colorKeyKeptThroughConversion {
            image = image.whitening(color: key)
        }
        return options.appliesExifOrientation ? image.applyingOrientation(decoded.orientation) : image
    }
}

/// The container format, told apart by its first bytes as PIL's plugins do (never by file extension).
enum ImageFormat: Equatable {
    case png
    case jpeg
    case unsupported(String)
    case unknown(String)

    /// Bytes `init(sniffing:)` looks at.
    static let sniffedBytes = 16

    /// The format of `bytes` when it is one we decode (PNG or JPEG), else the error naming `file`.
    static func decodable(_ bytes: [UInt8], file: String) throws(ImageError) -> ImageFormat {
        let format = ImageFormat(sniffing: bytes)
        switch format {
        case .png, .jpeg: return format
        case .unsupported(let name): throw ImageError(file: file, reason: .unsupportedFormat(name))
        case .unknown(let reason): throw ImageError(file: file, reason: .notAnImage(reason))
        }
    }

    init(sniffing bytes: [UInt8]) {
        func starts(with prefix: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + prefix.count && bytes[offset..<(offset + prefix.count)].elementsEqual(prefix)
        }
        let ascii = { (text: String) in Array(text.utf8) }
        if bytes.isEmpty {
            self = .unknown("the file is empty")
        } else if starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            self = .png
        } else if starts(with: [0xFF, 0xD8, 0xFF]) {
            self = .jpeg
        } else if starts(with: ascii("GIF87a")) || starts(with: ascii("GIF89a")) {
            self = .unsupported("GIF")
        } else if starts(with: ascii("RIFF")) && starts(with: ascii("WEBP"), at: 8) {
            self = .unsupported("WebP")
        } else if starts(with: ascii("BM")) {
            self = .unsupported("BMP")
        } else if starts(with: ascii("II*\0")) || starts(with: ascii("MM\0*")) {
            self = .unsupported("TIFF")
        } else if starts(with: ascii("ftyp"), at: 4) {
            self = .unsupported("HEIF/AVIF")
        } else {
            // The bytes themselves are not shown: the file may be anything (a record's path can name any file).
            self = .unknown("its first bytes are not the signature of any image format")
        }
    }
}

/// A codec's output before conversion to RGB, plus the orientation its metadata asks for.
struct DecodedImage {
    var samples: DecodedSamples
    var orientation: ExifOrientation
    /// The colour PIL still lists as `info["transparency"]` after `convert("RGB")`, if any.
    var colorKeyKeptThroughConversion: RGBColor?
}

/// 8-bit samples in one of PIL's basic layouts.
struct DecodedSamples {
    enum Layout: Int {
        case gray = 1, grayAlpha = 2, rgb = 3, rgba = 4

        var channelCount: Int { rawValue }
    }

    let width: Int
    let height: Int
    let layout: Layout
    let samples: [UInt8]  // (height, width, layout.channelCount)

    /// PIL's `convert("RGB")` (grey replicated, alpha dropped) or, when compositing,
    /// `alpha_composite(white, image.convert("RGBA")).convert("RGB")`.
    func flattenedToRGB(compositingAlpha: Bool) -> RGBImage {
        let pixelCount = width * height
        let channels = layout.channelCount
        let hasAlpha = layout == .grayAlpha || layout == .rgba
        let composites = hasAlpha && compositingAlpha
        if layout == .rgb {
            return RGBImage(width: width, height: height, pixels: samples)
        }
        var rgb = [UInt8](repeating: 0, count: pixelCount * 3)  // (height, width, 3)
        samples.withUnsafeBufferPointer { input in
            rgb.withUnsafeMutableBufferPointer { output in
                for pixel in 0..<pixelCount {
                    let from = pixel * channels
                    let to = pixel * 3
                    let isGray = layout == .gray || layout == .grayAlpha
                    var red = input[from]
                    var green = isGray ? red : input[from + 1]
                    var blue = isGray ? red : input[from + 2]
                    if composites {
                        let alpha = input[from + channels - 1]
                        red = compositedOverWhite(red, alpha: alpha)
                        green = compositedOverWhite(green, alpha: alpha)
                        blue = compositedOverWhite(blue, alpha: alpha)
                    }
                    output[to] = red
                    output[to + 1] = green
                    output[to + 2] = blue
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }
}

extension RGBImage {
    /// transformers' `convert_to_rgb` for an RGB image whose PIL info names a transparent colour: those pixels
    /// are composited over white with alpha 0 (they become white), the others with alpha 255 (unchanged).
    func whitening(color key: RGBColor) -> RGBImage {
        var output = pixels  // (height, width, 3)
        for offset in stride(from: 0, to: output.count, by: 3) {
            let matches = output[offset] == key.red && output[offset + 1] == key.green && output[offset + 2] == key.blue
            let alpha: UInt8 = matches ? 0 : 255
            for channel in 0..<3 {
                output[offset + channel] = compositedOverWhite(output[offset + channel], alpha: alpha)
            }
        }
        return RGBImage(width: width, height: height, pixels: output)
    }
}

/// One channel of Pillow's `ImagingAlphaComposite` with an opaque white destination: integer arithmetic
/// with 7 extra bits and a shift-based division by 255, reproduced because a float blend rounds differently.
@inline(__always)
func compositedOverWhite(_ value: UInt8, alpha: UInt8) -> UInt8 {
    if alpha == 0 {
        return 255
    }
    let precisionBits: UInt32 = 7
    let sourceAlpha = UInt32(alpha)
    let destinationAlpha: UInt32 = 255
    let destinationValue: UInt32 = 255
    let blend = destinationAlpha * (255 - sourceAlpha)
    let outputAlpha255 = sourceAlpha * 255 + blend
    let sourceCoefficient = sourceAlpha * 255 * 255 * (1 << precisionBits) / outputAlpha255
    let destinationCoefficient = 255 * (1 << precisionBits) - sourceCoefficient
    let weighted = UInt32(value) * sourceCoefficient + destinationValue * destinationCoefficient
    return UInt8(truncatingIfNeeded: shiftDivide255(weighted + (0x80 << precisionBits)) >> precisionBits)
}

/// Pillow's SHIFTFORDIV255: `x / 255` for the ranges its blends produce, without a division.
@inline(__always)
func shiftDivide255(_ value: UInt32) -> UInt32 {
    ((value >> 8) + value) >> 8
}

/// Refuses headers that claim more pixels than allowed, before anything the size of the image is allocated.
func checkPixelCount(width: Int, height: Int, file: String, options: ImageDecodingOptions) throws(ImageError) {
    let (pixelCount, overflow) = width.multipliedReportingOverflow(by: height)
    if overflow || pixelCount > options.maxPixelCount {
        throw ImageError(file: file, reason: .tooManyPixels(width: width, height: height, limit: options.maxPixelCount))
    }
}
