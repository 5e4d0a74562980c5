import CJPEG
import Foundation

/// JPEG through libjpeg(-turbo) with the settings PIL's JpegDecode uses (accurate integer IDCT, fancy
/// upsampling, libjpeg's own YCbCr→RGB), so the pixels match PIL's exactly. Grey JPEGs come out as grey and
/// are replicated; CMYK/YCCK JPEGs are read the way PIL reads them (always as Adobe-inverted CMYK) and
/// converted with PIL's CMYK→RGB formula.
enum JPEGDecoder {
    static func decode(_ encoded: [UInt8], file: String, options: ImageDecodingOptions) throws(ImageError) -> DecodedImage {
        guard let reader = vision_jpeg_reader_create() else { throw ImageError(file: file, reason: .outOfMemory) }
        defer { vision_jpeg_reader_destroy(reader) }
        // libjpeg reads straight from `encoded`, so every decoding step stays inside this closure.
        return try encoded.withUnsafeBufferPointer { buffer throws(ImageError) in
            guard let base = buffer.baseAddress else { throw ImageError(file: file, reason: .notAnImage("the file is empty")) }
            guard vision_jpeg_read_header(reader, base, buffer.count) == 1 else { throw failure(of: reader, file: file) }
            return try decodeAfterHeader(reader: reader, file: file, options: options)
        }
    }

    private static func decodeAfterHeader(
        reader: UnsafeMutablePointer<vision_jpeg_reader>, file: String, options: ImageDecodingOptions
    ) throws(ImageError) -> DecodedImage {
        let header = reader.pointee.decompressor
        try checkPixelCount(width: Int(header.image_width), height: Int(header.image_height), file: file, options: options)
        // Read before decompressing: jpeg_finish_decompress and jpeg_abort free the saved markers.
        let orientation = options.appliesExifOrientation ? orientationFromMarkers(reader: reader) : .upright

        // PIL chooses its mode from the component count alone: 1 → L, 3 → RGB, 4 → CMYK.
        let outputColorSpace: J_COLOR_SPACE
        switch header.num_components {
        case 1: outputColorSpace = JCS_GRAYSCALE
        case 3: outputColorSpace = JCS_RGB
        case 4: outputColorSpace = JCS_CMYK
        default:
            throw ImageError(file: file, reason: .corrupt("JPEG with \(header.num_components) components (PIL reads 1, 3 or 4)"))
        }
        guard vision_jpeg_start(reader, outputColorSpace) == 1 else { throw failure(of: reader, file: file) }

        let width = Int(reader.pointee.decompressor.output_width)
        let height = Int(reader.pointee.decompressor.output_height)
        let components = Int(reader.pointee.decompressor.output_components)
        let rowBytes = width * components
        var rows = [UInt8](repeating: 0, count: rowBytes * height)  // (height, width, components)
        let rowsRead = rows.withUnsafeMutableBufferPointer { rowBuffer in
            rowBuffer.baseAddress.map { vision_jpeg_read_rows(reader, $0, rowBytes) } ?? 1
        }
        guard rowsRead == 1 else { throw failure(of: reader, file: file) }
        if reader.pointee.saw_premature_end != 0 {
            throw ImageError(file: file, reason: .truncated("libjpeg: Premature end of JPEG file"))
        }

        let samples: DecodedSamples
        switch components {
        case 1: samples = DecodedSamples(width: width, height: height, layout: .gray, samples: rows)
        case 3: samples = DecodedSamples(width: width, height: height, layout: .rgb, samples: rows)
        case 4: samples = DecodedSamples(width: width, height: height, layout: .rgb, samples: rgbFromInvertedCMYK(rows))
        default:
            throw ImageError(file: file, reason: .corrupt("libjpeg produced \(components) components"))
        }
        return DecodedImage(samples: samples, orientation: orientation, colorKeyKeptThroughConversion: nil)
    }

    private static func failure(of reader: UnsafeMutablePointer<vision_jpeg_reader>, file: String) -> ImageError {
        let message = withUnsafeBytes(of: reader.pointee.message) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        // libjpeg pads a short file with an end-of-image marker and then usually fails for lack of a scan; the
        // warning it gave first is the real reason.
        if reader.pointee.saw_premature_end != 0 {
            return ImageError(file: file, reason: .truncated("libjpeg: Premature end of JPEG file (then: \(message))"))
        }
        return ImageError(file: file, reason: .corrupt("libjpeg: \(message)"))
    }

    /// PIL's "CMYK;I" unpacker (Adobe's inverted storage) followed by its `cmyk2rgb`:
    /// `255 - k - (c × (255 - k)) / 255` with Pillow's rounded shift division.
    private static func rgbFromInvertedCMYK(_ cmyk: [UInt8]) -> [UInt8] {
        let pixelCount = cmyk.count / 4
        var rgb = [UInt8](repeating: 0, count: pixelCount * 3)  // (height, width, 3)
        for pixel in 0..<pixelCount {
            let inverseBlack = Int(cmyk[pixel * 4 + 3])  // 255 - k, where k = 255 - stored
            for channel in 0..<3 {
                let ink = 255 - Int(cmyk[pixel * 4 + channel])
                let product = ink * inverseBlack + 128
                let scaled = ((product >> 8) + product) >> 8
                rgb[pixel * 3 + channel] = UInt8(clamping: inverseBlack - scaled)
            }
        }
        return rgb
    }

    /// The first "Exif" APP1 segment and the last XMP APP1 segment, as Pillow's JpegImagePlugin keeps them.
    private static func orientationFromMarkers(reader: UnsafeMutablePointer<vision_jpeg_reader>) -> ExifOrientation {
        let exifPrefix = Array("Exif\0\0".utf8)
        let xmpPrefix = Array("http://ns.adobe.com/xap/1.0/\0".utf8)
        var exif: [UInt8]?
        var xmp: [UInt8]?
        var marker = reader.pointee.decompressor.marker_list
        while let current = marker {
            let segment = current.pointee
            if Int32(segment.marker) == JPEG_APP0 + 1, let data = segment.data {
                let bytes = Array(UnsafeBufferPointer(start: data, count: Int(segment.data_length)))
                if bytes.starts(with: exifPrefix) {
                    if exif == nil {
                        exif = bytes
                    }
                } else if bytes.starts(with: xmpPrefix) {
                    xmp = Array(bytes.dropFirst(xmpPrefix.count))
                }
            }
            marker = segment.next
        }
        return OrientationMetadata.orientation(exif: exif, xmp: xmp)
    }
}
