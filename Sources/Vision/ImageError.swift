/// Why an image could not be decoded, together with the file (or other source) it came from.
public struct ImageError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Reason: Equatable, Sendable {
        /// The file could not be read at all (missing, permissions, a directory).
        case unreadable(String)
        /// The bytes do not start like any image format (empty file, text, random bytes).
        case notAnImage(String)
        /// A recognised image format that this decoder does not handle (GIF, WebP, BMP, TIFF, ...).
        case unsupportedFormat(String)
        /// The data ends before the image does.
        case truncated(String)
        /// The data is damaged or inconsistent in a way the codec refuses.
        case corrupt(String)
        /// The header claims more pixels than the decoder is allowed to allocate (a decompression bomb).
        case tooManyPixels(width: Int, height: Int, limit: Int)
        /// The file is larger than `ImageDecodingOptions.maxFileBytes` (refused before reading it).
        case fileTooLarge(bytes: Int, limit: Int)
        /// The codec could not get memory for its own bookkeeping.
        case outOfMemory
        /// Encoding or writing an image file failed.
        case unwritable(String)
    }

    /// Path of the file, or a caller-chosen name for in-memory data.
    public let file: String
    public let reason: Reason

    public init(file: String, reason: Reason) {
        self.file = file
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .unreadable(let detail):
            return "\(file): cannot read the file: \(detail)"
        case .notAnImage(let detail):
            return "\(file): not an image: \(detail)"
        case .unsupportedFormat(let format):
            return "\(file): \(format) images are not supported (PNG and JPEG are)"
        case .truncated(let detail):
            return "\(file): truncated image data: \(detail)"
        case .corrupt(let detail):
            return "\(file): corrupt image data: \(detail)"
        case .tooManyPixels(let width, let height, let limit):
            return "\(file): \(width)×\(height) is \(width * height) pixels, more than the limit of \(limit) "
                + "(a possible decompression bomb; raise ImageDecodingOptions.maxPixelCount to allow it)"
        case .fileTooLarge(let bytes, let limit):
            return "\(file): the file is \(bytes) bytes, more than the limit of \(limit) for an image file "
                + "(raise ImageDecodingOptions.maxFileBytes to allow it)"
        case .outOfMemory:
            return "\(file): out of memory while setting up the decoder"
        case .unwritable(let detail):
            return "\(file): cannot write the image: \(detail)"
        }
    }
}
