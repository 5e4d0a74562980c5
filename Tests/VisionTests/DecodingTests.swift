import Foundation
import Testing
@testable import Vision

@Suite struct FixtureIndexTests {
    @Test func indexLoadsWithEveryCategory() throws {
        let index = try Fixtures.loadIndex()
        #expect(index.configs.count >= 10)
        #expect(index.decoded.count >= 40)
        #expect(index.resized.count >= 8)
        #expect(index.pixelValues.count >= 40)
        #expect(index.badInputs.count >= 10)
        #expect(index.resizeSizes.count >= 100)
    }
}

@Suite struct DecodingTests {
    @Test("Decoded pixels equal PIL's", arguments: Fixtures.index?.decoded ?? [])
    func decodedPixelsEqualPIL(_ fixture: FixtureIndex.DecodedCase) throws {
        let options = try Fixtures.options(alpha: fixture.alpha, exifOrientation: fixture.exifOrientation)
        let image = try ImageDecoder.decode(contentsOf: Fixtures.url(fixture.image), options: options)
        try #require(image.width == fixture.width && image.height == fixture.height,
                     "decoded \(image.width)×\(image.height), PIL \(fixture.width)×\(fixture.height)")
        let reference = try Fixtures.bytes(fixture.reference, expectedCount: fixture.height * fixture.width * 3)
        let difference = maxByteDifference(image.pixels, reference)
        print("[decode] \(fixture.testDescription): max |diff| = \(difference)")
        #expect(difference == 0)
    }

    @Test("Bad input is refused with the file and the reason", arguments: Fixtures.index?.badInputs ?? [])
    func badInputIsRefused(_ fixture: FixtureIndex.BadInput) throws {
        let url = try Fixtures.url(fixture.file)
        if fixture.expected == "loads" {
            // PIL loads this damaged file; its pixels are those of the intact original.
            let damaged = try ImageDecoder.decode(contentsOf: url)
            let intact = try ImageDecoder.decode(contentsOf: Fixtures.url("images/coffee_wide.jpg"))
            #expect(damaged == intact)
            return
        }
        do {
            let image = try ImageDecoder.decode(contentsOf: url)
            Issue.record("decoded \(image.width)×\(image.height) instead of refusing (PIL: \(fixture.pil))")
        } catch {
            print("[bad input] \(fixture.file): \(error)  (PIL: \(fixture.pil))")
            #expect(error.file == url.path)
            #expect(reasonName(error.reason) == fixture.expected, "\(error)")
        }
    }

    @Test func inMemoryDataIsNamedInErrors() throws {
        let png = try [UInt8](Data(contentsOf: Fixtures.url("images/face_rgb8.png")))
        #expect(throws: ImageError(file: "upload #3", reason: .notAnImage("the file is empty"))) {
            try ImageDecoder.decode([], file: "upload #3")
        }
        do {
            _ = try ImageDecoder.decode(Array(png.prefix(png.count - 40)), file: "upload #4")
            Issue.record("a truncated PNG decoded")
        } catch {
            #expect(error.file == "upload #4")
            #expect(reasonName(error.reason) == "truncated")
        }
        let whole = try ImageDecoder.decode(png, file: "upload #5")
        #expect(whole == (try ImageDecoder.decode(contentsOf: Fixtures.url("images/face_rgb8.png"))))
    }

    /// A file that is not an image (any file a path can name) is refused without showing its bytes.
    @Test func notAnImageDoesNotShowTheFileContents() throws {
        do {
            _ = try ImageDecoder.decode(Array("root:x:0:0:root:/root:/bin/bash\n".utf8), file: "passwd")
            Issue.record("a text file decoded")
        } catch {
            #expect(reasonName(error.reason) == "notAnImage")
            #expect(!"\(error)".contains("72 6f") && !"\(error)".contains("root"), "\(error)")
        }
    }

    @Test func missingFileAndDirectoryAreUnreadable() throws {
        let missing = try Fixtures.url("images/no_such_file.png")
        #expect(throws: ImageError(file: missing.path, reason: .unreadable("No such file or directory"))) {
            try ImageDecoder.decode(contentsOf: missing)
        }
        let directory = try Fixtures.url("images")
        #expect(throws: ImageError(file: directory.path, reason: .unreadable("a directory, not a regular file"))) {
            try ImageDecoder.decode(contentsOf: directory)
        }
    }

    @Test func pixelLimitIsCheckedBeforeDecoding() throws {
        for file in ["images/coffee_wide.jpg", "images/face_rgb8.png"] {
            let url = try Fixtures.url(file)
            let size = try ImageDecoder.decode(contentsOf: url)
            let pixelCount = size.width * size.height
            // The limit is inclusive: exactly that many pixels still decode.
            _ = try ImageDecoder.decode(contentsOf: url, options: ImageDecodingOptions(maxPixelCount: pixelCount))
            #expect(throws: ImageError(file: url.path,
                                       reason: .tooManyPixels(width: size.width, height: size.height, limit: pixelCount - 1))) {
                try ImageDecoder.decode(contentsOf: url, options: ImageDecodingOptions(maxPixelCount: pixelCount - 1))
            }
        }
        #expect(ImageDecodingOptions.defaultMaxPixelCount == 178_956_970)
    }

    @Test func exifOrientationCanBeIgnored() throws {
        let upright = try ImageDecoder.decode(contentsOf: Fixtures.url("images/chelsea_orientation_1.jpg"))
        for orientation in 2...8 {
            let url = try Fixtures.url("images/chelsea_orientation_\(orientation).jpg")
            let raw = try ImageDecoder.decode(contentsOf: url, options: ImageDecodingOptions(appliesExifOrientation: false))
            #expect(raw == upright, "orientation \(orientation)")
            let rotated = try ImageDecoder.decode(contentsOf: url)
            let expected = upright.applyingOrientation(try #require(ExifOrientation(rawValue: orientation)))
            #expect(rotated == expected, "orientation \(orientation)")
        }
    }
}

/// The case name of a reason, matching the "expected" strings of the fixture index.
func reasonName(_ reason: ImageError.Reason) -> String {
    switch reason {
    case .unreadable: return "unreadable"
    case .notAnImage: return "notAnImage"
    case .unsupportedFormat: return "unsupportedFormat"
    case .truncated: return "truncated"
    case .corrupt: return "corrupt"
    case .tooManyPixels: return "tooManyPixels"
    case .fileTooLarge: return "fileTooLarge"
    case .outOfMemory: return "outOfMemory"
    case .unwritable: return "unwritable"
    }
}
