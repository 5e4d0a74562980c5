import CPNG
import Foundation

/// Writes RGB images as 8-bit PNG files through libpng's simplified write API (no gamma or
/// alpha handling is involved for plain 8-bit RGB, so it writes the pixels as they are).
public enum PNGEncoder {
    public static func write(_ image: RGBImage, to url: URL) throws(ImageError) {
        var description = png_image()
        description.version = UInt32(PNG_IMAGE_VERSION)
        description.width = UInt32(image.width)
        description.height = UInt32(image.height)
        description.format = UInt32(PNG_FORMAT_FLAG_COLOR)  // 8-bit RGB, no alpha
        let written = image.pixels.withUnsafeBytes { pixels in
            png_image_write_to_file(&description, url.path, 0, pixels.baseAddress, Int32(image.width * 3), nil)
        }
        if written == 0 {
            let message = withUnsafeBytes(of: description.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            png_image_free(&description)
            throw ImageError(file: url.path, reason: .unwritable(message.isEmpty ? "libpng failed" : message))
        }
    }
}
