import Foundation
import Testing
@testable import Vision

/// What a user names as an image is checked before it is read whole: a FIFO would block `open`
/// forever, and a huge file would be allocated in full before its first bytes were looked at.
@Suite struct FileLimitTests {
    private static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("image-limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// A sparse file of `size` bytes (no disk used) starting with `start`.
    private static func sparseFile(_ url: URL, start: [UInt8], size: Int) throws {
        FileManager.default.createFile(atPath: url.path, contents: Data(start))
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
    }

    private static func reason(_ url: URL, options: ImageDecodingOptions = ImageDecodingOptions()) -> ImageError.Reason? {
        do {
            _ = try ImageDecoder.decode(contentsOf: url, options: options)
            return nil
        } catch {
            #expect(error.file == url.path)
            return error.reason
        }
    }

    @Test func fifoIsRefusedWithoutBlocking() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fifo = directory.appendingPathComponent("image.png")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        guard case let .unreadable(detail)? = Self.reason(fifo) else {
            Issue.record("expected unreadable")
            return
        }
        #expect(detail.contains("FIFO") && detail.contains("not a regular file"))
    }

    /// 50 GB that is not an image: refused from its first bytes, never read whole.
    @Test func hugeNonImageIsRefusedFromItsSignature() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("huge.png")
        try Self.sparseFile(file, start: Array("not an image".utf8), size: 50 << 30)
        var options = ImageDecodingOptions()
        options.maxFileBytes = Int.max
        guard case .notAnImage? = Self.reason(file, options: options) else {
            Issue.record("expected notAnImage")
            return
        }
    }

    /// A PNG signature followed by 3 GB: refused by size before reading.
    @Test func hugeFileIsRefusedBySize() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("huge.png")
        try Self.sparseFile(file, start: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], size: 3 << 30)
        let error = #expect(throws: ImageError.self) { _ = try ImageDecoder.decode(contentsOf: file) }
        #expect(error?.reason == .fileTooLarge(bytes: 3 << 30, limit: 1 << 31))
        #expect(error?.description.contains("maxFileBytes") == true)
    }
}
