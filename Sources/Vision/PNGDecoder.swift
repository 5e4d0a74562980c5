import CPNG
import Foundation

/// PNG through libpng, reproducing the pixels PIL's PngImagePlugin produces for each colour type and depth:
/// palette and 1/2/4-bit grey expanded to 8 bits (grey scaled by 255/(2^depth - 1)); 16-bit samples reduced
/// to their high byte, except 16-bit grey without alpha, which PIL opens as "I;16" and clips to 255 when
/// converting to RGB; gamma, sRGB and ICC chunks ignored.
enum PNGDecoder {
    static func decode(_ encoded: [UInt8], file: String, options: ImageDecodingOptions) throws(ImageError) -> DecodedImage {
        // The reader points into `encoded`, so it must not outlive this closure.
        try encoded.withUnsafeBufferPointer { buffer throws(ImageError) in
            guard let base = buffer.baseAddress,
                  let reader = vision_png_reader_create(base, buffer.count)
            else { throw ImageError(file: file, reason: .outOfMemory) }
            defer { vision_png_reader_destroy(reader) }
            return try decode(reader: reader, file: file, options: options)
        }
    }

    private static func decode(
        reader: UnsafeMutablePointer<vision_png_reader>, file: String, options: ImageDecodingOptions
    ) throws(ImageError) -> DecodedImage {
        guard vision_png_read_header(reader) == 1 else { throw failure(of: reader, file: file) }
        let png = reader.pointee.png
        let info = reader.pointee.info
        let width = Int(png_get_image_width(png, info))
        let height = Int(png_get_image_height(png, info))
        let colorType = Int32(png_get_color_type(png, info))
        let bitDepth = Int32(png_get_bit_depth(png, info))
        try checkPixelCount(width: width, height: height, file: file, options: options)

        let isSixteenBitGray = colorType == PNG_COLOR_TYPE_GRAY && bitDepth == 16
        // Read before prepare: libpng rewrites its tRNS bookkeeping when it sets up the transformations.
        let transparency = transparencyAsPILKeepsIt(png: png, info: info, colorType: colorType, bitDepth: bitDepth)

        // Palette transparency always arrives as an alpha channel; grey and RGB keys are applied below with
        // PIL's comparison, which differs from libpng's at 2, 4 and 16 bits.
        guard vision_png_prepare(reader, isSixteenBitGray ? 1 : 0) == 1 else { throw failure(of: reader, file: file) }
        let channels = Int(png_get_channels(png, info))
        let bytesPerSample = isSixteenBitGray ? 2 : 1
        let rowBytes = Int(png_get_rowbytes(png, info))
        guard let layout = DecodedSamples.Layout(rawValue: channels), rowBytes == width * channels * bytesPerSample else {
            throw ImageError(file: file, reason: .corrupt("unexpected decoded row layout (\(channels) channels, \(rowBytes) bytes)"))
        }

        var rows = [UInt8](repeating: 0, count: rowBytes * height)  // (height, width, channels × bytesPerSample)
        let rowsRead = rows.withUnsafeMutableBufferPointer { rowBuffer in
            rowBuffer.baseAddress.map { vision_png_read_rows(reader, $0, rowBytes) } ?? 1
        }
        guard rowsRead == 1 else { throw failure(of: reader, file: file) }

        var orientation = ExifOrientation.upright
        if options.appliesExifOrientation {
            // PIL reads chunks after the image data too and ignores damage there, so the result is not checked.
            _ = vision_png_read_trailer(reader)
            orientation = orientationFromMetadata(png: png, info: info)
        }

        var samples = isSixteenBitGray
            ? clippedSixteenBitGray(rows, width: width, height: height)
            : DecodedSamples(width: width, height: height, layout: layout, samples: rows)
        switch transparency {
        case .grayKey(let key)? where options.alphaHandling == .compositeOverWhite:
            samples = applyingTransparencyKey([key], to: samples)
        case .rgbKey(let key)? where options.alphaHandling == .compositeOverWhite:
            samples = applyingTransparencyKey(key, to: samples)
        default:
            break
        }
        return DecodedImage(
            samples: samples, orientation: orientation,
            colorKeyKeptThroughConversion: colorKeyKeptThroughConversion(transparency, png: png, info: info, bitDepth: bitDepth))
    }

    private static func failure(of reader: UnsafeMutablePointer<vision_png_reader>, file: String) -> ImageError {
        let message = withUnsafeBytes(of: reader.pointee.message) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        if reader.pointee.ran_out_of_data != 0 {
            return ImageError(file: file, reason: .truncated("libpng: \(message)"))
        }
        return ImageError(file: file, reason: .corrupt("libpng: \(message)"))
    }

    /// PIL opens 16-bit grey as "I;16"; its conversion to 8 bits saturates at 255 rather than keeping the
    /// high byte, so almost every pixel of a typical 16-bit grey image comes out white. Reproduced on purpose.
    private static func clippedSixteenBitGray(_ rows: [UInt8], width: Int, height: Int) -> DecodedSamples {
        var gray = [UInt8](repeating: 0, count: width * height)  // (height, width)
        for index in 0..<gray.count {
            let value = UInt16(rows[2 * index]) << 8 | UInt16(rows[2 * index + 1])  // PNG samples are big-endian
            gray[index] = UInt8(min(value, 255))
        }
        return DecodedSamples(width: width, height: height, layout: .gray, samples: gray)
    }

    /// What PIL's PngImagePlugin stores as `info["transparency"]` for a tRNS chunk.
    private enum PILTransparency {
        /// A grey key: the raw chunk value, except for 1-bit images, whose key PIL maps to 0 or 255.
        case grayKey(UInt16)
        /// An RGB key: the raw 16-bit chunk values, even for 8-bit images.
        case rgbKey([UInt16])
        /// Palette alphas. PIL keeps an index instead of the alphas when the chunk is one 0 among 255s.
        case paletteAlphas(singleTransparentEntry: Int?)
    }

    private static func transparencyAsPILKeepsIt(
        png: png_structp?, info: png_infop?, colorType: Int32, bitDepth: Int32
    ) -> PILTransparency? {
        var alphas: png_bytep?
        var alphaCount: Int32 = 0
        var key: png_color_16p?
        guard png_get_tRNS(png, info, &alphas, &alphaCount, &key) & PNG_INFO_tRNS != 0 else { return nil }
        switch colorType {
        case PNG_COLOR_TYPE_GRAY:
            guard let gray = key?.pointee.gray else { return nil }
            return .grayKey(bitDepth == 1 ? (gray != 0 ? 255 : 0) : gray)
        case PNG_COLOR_TYPE_RGB:
            guard let color = key?.pointee else { return nil }
            return .rgbKey([color.red, color.green, color.blue])
        case PNG_COLOR_TYPE_PALETTE:
            guard let alphas, alphaCount > 0 else { return nil }
            let entries = UnsafeBufferPointer(start: alphas, count: Int(alphaCount))
            let transparent = entries.indices.filter { entries[$0] == 0 }
            let isSingle = transparent.count == 1 && entries.allSatisfy { $0 == 0 || $0 == 255 }
            return .paletteAlphas(singleTransparentEntry: isSingle ? transparent.first : nil)
        default:
            return nil
        }
    }

    /// The colour PIL still lists as transparent after `convert("RGB")`: a grey "L" key becomes that grey;
    /// "1" and "I;16" images keep the bare integer, which `convert("RGBA")` later reads as (key, 0, 0); an
    /// RGB key stays; a palette's single transparent entry becomes its colour; palette alphas are dropped.
    /// Keys above 255 cannot match an 8-bit pixel and are left out.
    private static func colorKeyKeptThroughConversion(
        _ transparency: PILTransparency?, png: png_structp?, info: png_infop?, bitDepth: Int32
    ) -> RGBColor? {
        switch transparency {
        case .grayKey(let key)?:
            guard key <= 255 else { return nil }
            let level = UInt8(key)
            return bitDepth == 1 || bitDepth == 16 ? (level, 0, 0) : (level, level, level)
        case .rgbKey(let key)?:
            guard key.allSatisfy({ $0 <= 255 }) else { return nil }
            return (UInt8(key[0]), UInt8(key[1]), UInt8(key[2]))
        case .paletteAlphas(let entry?)?:
            var palette: png_colorp?
            var paletteCount: Int32 = 0
            guard png_get_PLTE(png, info, &palette, &paletteCount) & PNG_INFO_PLTE != 0, let palette,
                  entry < Int(paletteCount)
            else { return nil }
            return (palette[entry].red, palette[entry].green, palette[entry].blue)
        default:
            return nil
        }
    }

    /// PIL compares the key with the pixels after they became 8-bit (grey scaled up, 16-bit reduced), so a
    /// key that libpng would match at 2, 4 or 16 bits may match nothing here; that is what PIL does.
    private static func applyingTransparencyKey(_ key: [UInt16], to samples: DecodedSamples) -> DecodedSamples {
        let channels = samples.layout.channelCount
        guard key.count == channels, samples.layout == .gray || samples.layout == .rgb else { return samples }
        let pixelCount = samples.width * samples.height
        var withAlpha = [UInt8](repeating: 0, count: pixelCount * (channels + 1))  // (height, width, channels + 1)
        for pixel in 0..<pixelCount {
            var matches = true
            for channel in 0..<channels {
                let value = samples.samples[pixel * channels + channel]
                withAlpha[pixel * (channels + 1) + channel] = value
                matches = matches && UInt16(value) == key[channel]
            }
            withAlpha[pixel * (channels + 1) + channels] = matches ? 0 : 255
        }
        return DecodedSamples(
            width: samples.width, height: samples.height,
            layout: samples.layout == .gray ? .grayAlpha : .rgba, samples: withAlpha)
    }

    /// Pillow's order for PNG: the eXIf chunk, else a "Raw profile type exif" text chunk; the XMP packet
    /// ("XML:com.adobe.xmp") only when neither carries an Orientation tag.
    private static func orientationFromMetadata(png: png_structp?, info: png_infop?) -> ExifOrientation {
        var exif: [UInt8]?
        var exifLength: png_uint_32 = 0
        var exifBytes: png_bytep?
        if png_get_eXIf_1(png, info, &exifLength, &exifBytes) & PNG_INFO_eXIf != 0, let exifBytes {
            exif = Array(UnsafeBufferPointer(start: exifBytes, count: Int(exifLength)))
        }

        var rawProfile: [UInt8]?
        var xmp: [UInt8]?
        var texts: png_textp?
        var textCount: Int32 = 0
        _ = png_get_text(png, info, &texts, &textCount)
        if let texts {
            // Later chunks with the same key replace earlier ones in PIL's info dictionary.
            for index in 0..<Int(max(textCount, 0)) {
                let entry = texts[index]
                guard let key = entry.key, let text = entry.text else { continue }
                let value = Array(UnsafeRawBufferPointer(start: text, count: strlen(text)))
                switch String(cString: key) {
                case "Raw profile type exif": rawProfile = value
                case "XML:com.adobe.xmp": xmp = value
                default: break
                }
            }
        }
        if exif == nil, let rawProfile {
            exif = OrientationMetadata.exifFromRawProfileText(rawProfile)
        }
        return OrientationMetadata.orientation(exif: exif, xmp: xmp)
    }
}
