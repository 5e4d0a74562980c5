import Foundation
import Testing
@testable import Vision

/// The fixture index written by tools/reference/make_image_fixtures.py.
struct FixtureIndex: Decodable {
    struct Config: Decodable, Sendable {
        let name: String
        let file: String
        let parsed: ParsedConfig
    }

    /// How transformers itself read a configuration file.
    struct ParsedConfig: Decodable, Sendable {
        let doResize: Bool
        let size: [String: Int]
        let resample: Int
        let doCenterCrop: Bool
        let cropSize: [String: Int]
        let doRescale: Bool
        let rescaleFactor: Double
        let doNormalize: Bool
        let imageMean: [Double]
        let imageStd: [Double]
        let doConvertRgb: Bool
    }

    struct DecodedCase: Decodable, Sendable, CustomTestStringConvertible {
        let image: String
        let alpha: String
        let exifOrientation: Bool
        let reference: String
        let height: Int
        let width: Int

        var testDescription: String { "\(image) [\(alpha)]" }
    }

    struct ResizedCase: Decodable, Sendable, CustomTestStringConvertible {
        let image: String
        let filter: Int
        let width: Int
        let height: Int
        let reference: String

        var testDescription: String { "\(image) → \(width)×\(height) filter \(filter)" }
    }

    struct PixelValuesCase: Decodable, Sendable, CustomTestStringConvertible {
        let image: String
        let config: String
        let alpha: String
        let exifOrientation: Bool
        let padToSquare: Bool
        let shape: [Int]
        let reference: String

        var testDescription: String { "\(image) with \(config) [\(alpha)\(padToSquare ? ", square" : "")]" }
    }

    struct BadInput: Decodable, Sendable, CustomTestStringConvertible {
        let file: String
        let expected: String
        let pil: String

        var testDescription: String { file }
    }

    struct ResizeSize: Decodable, Sendable {
        let height: Int
        let width: Int
        let shortestEdge: Int
        let longestEdge: Int?
        let output: [Int]
    }

    let configs: [Config]
    let decoded: [DecodedCase]
    let resized: [ResizedCase]
    let pixelValues: [PixelValuesCase]
    let badInputs: [BadInput]
    let resizeSizes: [ResizeSize]
}

enum Fixtures {
    enum LoadError: Error, CustomStringConvertible {
        case missingDirectory
        case wrongSize(String, expected: Int, actual: Int)
        case unknownAlphaMode(String)

        var description: String {
            switch self {
            case .missingDirectory: return "the Fixtures resource directory is missing from the test bundle"
            case .wrongSize(let file, let expected, let actual): return "\(file): expected \(expected) bytes, found \(actual)"
            case .unknownAlphaMode(let mode): return "unknown alpha mode \(mode) in the fixture index"
            }
        }
    }

    /// Tests/Fixtures/vision in the source tree.
    static func directory() throws -> URL {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/vision")
        guard FileManager.default.fileExists(atPath: url.path) else { throw LoadError.missingDirectory }
        return url
    }

    static func url(_ relativePath: String) throws -> URL {
        try directory().appendingPathComponent(relativePath)
    }

    static func loadIndex() throws -> FixtureIndex {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(FixtureIndex.self, from: Data(contentsOf: url("index.json")))
    }

    /// The index, or nothing when it cannot be read; `FixtureIndexTests` fails loudly in that case, so the
    /// parameterised tests below do not silently pass on an empty list.
    static let index: FixtureIndex? = try? loadIndex()

    static func bytes(_ relativePath: String, expectedCount: Int) throws -> [UInt8] {
        let bytes = [UInt8](try Data(contentsOf: url(relativePath)))
        guard bytes.count == expectedCount else {
            throw LoadError.wrongSize(relativePath, expected: expectedCount, actual: bytes.count)
        }
        return bytes
    }

    /// A raw little-endian float32 file.
    static func floats(_ relativePath: String, expectedCount: Int) throws -> [Float] {
        littleEndianFloats(try bytes(relativePath, expectedCount: expectedCount * 4))
    }

    /// The decoding options that reproduce one of the fixture's Python paths (see the script's docstring).
    static func options(alpha: String, exifOrientation: Bool) throws -> ImageDecodingOptions {
        let handling: AlphaHandling
        switch alpha {
        case "discard": handling = .discard
        case "load_image_then_processor": handling = .loadImageThenProcessor
        case "composite": handling = .compositeOverWhite
        default: throw LoadError.unknownAlphaMode(alpha)
        }
        return ImageDecodingOptions(appliesExifOrientation: exifOrientation, alphaHandling: handling)
    }

    static func config(named name: String) throws -> CLIPImageProcessorConfig {
        let file = try #require(index?.configs.first { $0.name == name }?.file, "no config named \(name)")
        return try CLIPImageProcessorConfig.load(contentsOf: url(file))
    }
}

/// Largest absolute difference between two equally long byte arrays, as integers.
func maxByteDifference(_ lhs: [UInt8], _ rhs: [UInt8]) -> Int {
    zip(lhs, rhs).reduce(0) { largest, pair in max(largest, abs(Int(pair.0) - Int(pair.1))) }
}

/// Raw little-endian float32 values (the fixtures' binary arrays).
func littleEndianFloats<Bytes: DataProtocol & ContiguousBytes>(_ raw: Bytes) -> [Float] {
    raw.withUnsafeBytes { buffer in
        (0..<(buffer.count / 4)).map { index in
            Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
        }
    }
}
