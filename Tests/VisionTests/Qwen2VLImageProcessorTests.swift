import Foundation
import Testing
@testable import Vision

/// Tests/Fixtures/qwen2-vl-images, written by tools/reference/make_qwen2vl_image_fixtures.py from
/// transformers' Qwen2VLImageProcessorPil on real photographs of several aspect ratios.
enum Qwen2VLFixtures {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/qwen2-vl-images")

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        let config: String, image: String, imagePath: String, pixelValues: String
        let shape: [Int]  // (patches, 3·2·14·14)
        let imageGridThw: [Int]
        enum CodingKeys: String, CodingKey {
            case config, image, shape
            case imagePath = "image_path", pixelValues = "pixel_values", imageGridThw = "image_grid_thw"
        }
        var testDescription: String { "\(image) with \(config)" }
    }

    static let cases: [Case] = {
        struct Index: Decodable { let cases: [Case] }
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("index.json")) else { return [] }
        return (try? JSONDecoder().decode(Index.self, from: data).cases) ?? []
    }()

    static func floats(_ name: String) throws -> [Float] {
        littleEndianFloats(try Data(contentsOf: folder.appendingPathComponent(name)))
    }
}

@Suite("Qwen2-VL image processor against transformers")
struct Qwen2VLImageProcessorTests {
    @Test func fixturesArePresent() {
        #expect(Qwen2VLFixtures.cases.count == 7)
    }

    /// pixel_values bit for bit and image_grid_thw equal, for landscape, square, grey, portrait and
    /// below-minimum images under three pixel ranges (both config layouts' keys).
    @Test(arguments: Qwen2VLFixtures.cases)
    func pixelValuesAndGridAreExact(fixture: Qwen2VLFixtures.Case) throws {
        let config = try Qwen2VLImageProcessorConfig.load(contentsOf: Qwen2VLFixtures.folder.appendingPathComponent(fixture.config))
        let imageURL = Qwen2VLFixtures.folder.deletingLastPathComponent().appendingPathComponent(fixture.imagePath)
        let result = try Qwen2VLImageProcessor(config: config).preprocess(try ImageDecoder.decode(contentsOf: imageURL))
        #expect([result.gridT, result.gridH, result.gridW] == fixture.imageGridThw)
        #expect([result.gridT * result.gridH * result.gridW, result.patchDimension] == fixture.shape)
        let expected = try Qwen2VLFixtures.floats(fixture.pixelValues)
        try #require(expected.count == result.values.count)
        let differing = zip(result.values, expected).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differing == 0, "\(differing) of \(expected.count) values differ")
    }

    /// `smart_resize` on sizes worked out by hand from transformers' formula.
    @Test func smartResizeFollowsTransformers() throws {
        func resize(_ height: Int, _ width: Int, min: Int = 3136, max: Int = 1_003_520) throws -> [Int] {
            let size = try Qwen2VLImageProcessor.smartResize(height: height, width: width, factor: 28, minPixels: min, maxPixels: max)
            return [size.height, size.width]
        }
        #expect(try resize(560, 845) == [560, 840])  // round(20)·28, round(30.18)·28: under the cap
        #expect(try resize(960, 1280) == [840, 1148])  // 952 × 1288 is over the cap: scaled down with floor
        #expect(try resize(42, 42) == [56, 56])  // round(1.5) = 2 (half to even): 56 × 56 = 3136, at the floor
        #expect(try resize(70, 70) == [56, 56])  // round(2.5) = 2, half to even
        #expect(try resize(3000, 4000, max: 12544) == [84, 112])  // scaled down: floor(3000/β/28) = 3, floor(4000/β/28) = 4
        #expect(try resize(10, 20) == [56, 84])  // scaled up to min_pixels with ceil
        #expect(throws: ImageProcessingError.self) { try resize(1, 201) }  // aspect ratio over 200
    }

    @Test func badConfigurationsAreNamed() {
        func message(_ json: String) -> String {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("qwen2vl-\(UUID().uuidString).json")
            defer { try? FileManager.default.removeItem(at: url) }
            do {
                try Data(json.utf8).write(to: url)
                _ = try Qwen2VLImageProcessorConfig.load(contentsOf: url)
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(message(#"{"min_pixels": 5000, "max_pixels": 100}"#).contains("max_pixels"))
        #expect(message(#"{"merge_size": 0}"#).contains("merge_size"))
        #expect(message(#"{"image_std": [0.5, 0, 0.5]}"#).contains("image_std"))
        #expect(message(#"{"image_processor": {"size": {"shortest_edge": 3136, "longest_edge": 12544}}}"#) == "no error")
    }
}
