import Foundation
import Testing
@testable import Vision

/// Tests/Fixtures/anyres, written by tools/reference/make_anyres_fixtures.py from transformers' PIL backend.
enum AnyresFixtures {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/anyres")

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        let image: String
        let config: String
        let pixelValues: String
        let shape: [Int]  // (patches, 3, height, width)
        let imageSizes: [Int]  // (height, width)
        let bestResolution: [Int]  // (height, width)
        let imageTokens: Int

        enum CodingKeys: String, CodingKey {
            case image, config, shape
            case pixelValues = "pixel_values"
            case imageSizes = "image_sizes"
            case bestResolution = "best_resolution"
            case imageTokens = "image_tokens"
        }

        var testDescription: String { "\(image) with \(config)" }
    }

    struct Index: Decodable {
        let cases: [Case]
        /// config file -> [height, width, tokens]
        let tokenCounts: [String: [[Int]]]

        enum CodingKeys: String, CodingKey {
            case cases
            case tokenCounts = "token_counts"
        }
    }

    static let index: Index? = {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("index.json")) else { return nil }
        return try? JSONDecoder().decode(Index.self, from: data)
    }()

    static let cases: [Case] = index?.cases ?? []
    static let tokenCountConfigs: [String] = index.map { $0.tokenCounts.keys.sorted() } ?? []

    static func floats(_ name: String) throws -> [Float] {
        littleEndianFloats(try Data(contentsOf: folder.appendingPathComponent(name)))
    }

    static func processor(_ config: String) throws -> AnyresProcessor {
        AnyresProcessor(config: try AnyresProcessorConfig.load(contentsOf: folder.appendingPathComponent(config)))
    }
}

@Suite("LLaVA-NeXT anyres preprocessing against transformers")
struct AnyresFixtureTests {
    @Test("Fixtures are present")
    func fixturesPresent() {
        #expect(AnyresFixtures.cases.count == 7)
    }

    @Test("pixel_values match LlavaNextImageProcessorPil", arguments: AnyresFixtures.cases)
    func pixelValues(fixture: AnyresFixtures.Case) throws {
        let processor = try AnyresFixtures.processor(fixture.config)
        let image = try ImageDecoder.decode(contentsOf: AnyresFixtures.folder.appendingPathComponent(fixture.image))
        let result = try processor.preprocess(image)
        #expect([result.patchCount, 3, result.height, result.width] == fixture.shape)
        #expect([result.imageHeight, result.imageWidth] == fixture.imageSizes)
        let expected = try AnyresFixtures.floats(fixture.pixelValues)
        try #require(expected.count == result.values.count)
        var maximumDifference: Float = 0
        for (ours, theirs) in zip(result.values, expected) {
            maximumDifference = max(maximumDifference, abs(ours - theirs))
        }
        print("anyres max |diff| \(fixture.testDescription): \(maximumDifference)")
        #expect(maximumDifference < 1e-3)
    }

    @Test("Best resolution and tile count match", arguments: AnyresFixtures.cases)
    func bestResolution(fixture: AnyresFixtures.Case) throws {
        let processor = try AnyresFixtures.processor(fixture.config)
        let best = AnyresProcessor.selectBestResolution(
            height: fixture.imageSizes[0], width: fixture.imageSizes[1], among: processor.config.imageGridPinpoints)
        #expect(best.map { [$0.height, $0.width] } == fixture.bestResolution)
        let side = processor.config.tileSide
        let tiles = ((fixture.bestResolution[0] + side - 1) / side) * ((fixture.bestResolution[1] + side - 1) / side)
        #expect(tiles + 1 == fixture.shape[0])
    }

    @Test("Image token count matches LlavaNextProcessor", arguments: AnyresFixtures.cases)
    func tokenCount(fixture: AnyresFixtures.Case) throws {
        let processor = try AnyresFixtures.processor(fixture.config)
        let count = try processor.imageTokenCount(originalHeight: fixture.imageSizes[0], originalWidth: fixture.imageSizes[1])
        #expect(count == fixture.imageTokens)
    }

    @Test("Image token counts for many sizes match LlavaNextProcessor", arguments: AnyresFixtures.tokenCountConfigs)
    func tokenCountTable(config: String) throws {
        let processor = try AnyresFixtures.processor(config)
        let table = try #require(AnyresFixtures.index?.tokenCounts[config])
        #expect(table.count > 200)
        for row in table {
            try #require(row.count == 3)
            let count = try processor.imageTokenCount(originalHeight: row[0], originalWidth: row[1])
            #expect(count == row[2], "\(row[0])×\(row[1])")
        }
    }
}

@Suite("Anyres arithmetic")
struct AnyresArithmeticTests {
    static let llavaConfig = AnyresProcessorConfig(clip: {
        var clip = CLIPImageProcessorConfig()
        clip.size = .shortestEdge(336, longestEdge: nil)
        clip.cropHeight = 336
        clip.cropWidth = 336
        return clip
    }())

    @Test("select_best_resolution: most effective pixels, then least waste, then first")
    func selection() {
        let pinpoints = AnyresProcessorConfig.defaultGridPinpoints
        // Wide: 336×672 keeps all of 300×451 with the least waste.
        #expect(AnyresProcessor.selectBestResolution(height: 300, width: 451, among: pinpoints) == GridResolution(height: 336, width: 672))
        // Large square: only 672×672 keeps it at full width and height.
        #expect(AnyresProcessor.selectBestResolution(height: 1000, width: 1000, among: pinpoints) == GridResolution(height: 672, width: 672))
        // Very tall: 1008×336.
        #expect(AnyresProcessor.selectBestResolution(height: 3000, width: 600, among: pinpoints) == GridResolution(height: 1008, width: 336))
        // Tiny: every resolution keeps everything; the first of the two smallest areas wins.
        #expect(AnyresProcessor.selectBestResolution(height: 10, width: 10, among: pinpoints) == GridResolution(height: 336, width: 672))
        #expect(AnyresProcessor.selectBestResolution(height: 10, width: 10, among: []) == nil)
    }

    @Test("get_patch_output_size rounds the free side up")
    func fitting() {
        let target = GridResolution(height: 336, width: 672)
        #expect(AnyresProcessor.fittedSize(height: 300, width: 451, into: target) == (336, 506))
        #expect(AnyresProcessor.fittedSize(height: 100, width: 1000, into: target) == (68, 672))
    }

    @Test("Token counts for the 336 grid, worked by hand")
    func tokens() throws {
        let processor = AnyresProcessor(config: Self.llavaConfig)
        // 300×451 on 336×672: 24×48 grid, width unpadded to 36: 24·36 + 24 + 576.
        #expect(try processor.imageTokenCount(originalHeight: 300, originalWidth: 451) == 1464)
        // Square 672×672 grid: 48·48 + 48 + 576.
        #expect(try processor.imageTokenCount(originalHeight: 1000, originalWidth: 1000) == 2928)
        #expect(try processor.imageTokenCount(originalHeight: 1000, originalWidth: 1000, strategy: .full) == 2929)
        #expect(throws: ImageProcessingError.self) { try processor.imageTokenCount(originalHeight: 0, originalWidth: 10) }
    }

    @Test("Tiles: base image first, then the padded grid row by row")
    func tiles() throws {
        let processor = AnyresProcessor(config: Self.llavaConfig)
        let image = RGBImage(width: 451, height: 300, filledWith: (200, 100, 50))
        let (patches, best) = try processor.patchImages(image)
        #expect(best == GridResolution(height: 336, width: 672))
        #expect(patches.count == 3)
        #expect(patches.allSatisfy { $0.width == 336 && $0.height == 336 })
        // 506 wide in 672: 83 black columns on the left; the left tile starts black, the right tile ends black.
        #expect(patches[1][0, 0] == (0, 0, 0))
        #expect(patches[1][83, 0] == (200, 100, 50))
        #expect(patches[2][335, 335] == (0, 0, 0))
        let values = try processor.preprocess(image)
        // Padding becomes (0 - mean) / std after normalizing.
        let expectedRed = (Float(0) - Float(CLIPImageProcessorConfig.openAICLIPMean[0])) / Float(CLIPImageProcessorConfig.openAICLIPStandardDeviation[0])
        #expect(values.values[3 * 336 * 336] == expectedRed)  // patch 1, red channel, (0, 0)
    }

    @Test("do_pad pads a batch with zero patches")
    func batchPadding() throws {
        let processor = AnyresProcessor(config: Self.llavaConfig)
        let wide = RGBImage(width: 451, height: 300, filledWith: (1, 2, 3))
        let square = RGBImage(width: 800, height: 800, filledWith: (1, 2, 3))
        let batch = try processor.preprocess([wide, square])
        #expect(batch.map(\.patchCount) == [5, 5])
        #expect(batch[0].values[(3 * 3 * 336 * 336)...].allSatisfy { $0 == 0 })
        var unpadded = processor
        unpadded.config.doPad = false
        #expect(try unpadded.preprocess([wide, square]).map(\.patchCount) == [3, 5])
    }
}

@Suite("Anyres configuration")
struct AnyresConfigTests {
    static func parse(_ json: String) throws(AnyresConfigError) -> AnyresProcessorConfig {
        try AnyresProcessorConfig.parse(Data(json.utf8))
    }

    static func failingKey(_ json: String) -> String? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            return error.key
        }
    }

    @Test("llava-v1.6 preprocessor_config.json")
    func llavaConfig() throws {
        let config = try AnyresProcessorConfig.load(contentsOf: AnyresFixtures.folder.appendingPathComponent("llava-v1.6-336.json"))
        #expect(config.imageGridPinpoints == AnyresProcessorConfig.defaultGridPinpoints)
        #expect(config.doPad)
        #expect(config.tileSide == 336)
        #expect(config.baseImageSize == (336, 336))
        #expect(config.clip.size == .shortestEdge(336, longestEdge: nil))
        #expect(config.clip.resample == .bicubic)
    }

    @Test("Defaults are LlavaNextImageProcessor's")
    func defaults() throws {
        let config = try Self.parse("{}")
        #expect(config.imageGridPinpoints == AnyresProcessorConfig.defaultGridPinpoints)
        #expect(config.doPad)
        #expect(config.clip.size == .shortestEdge(224, longestEdge: nil))
        #expect(config.tileSide == 224)
        #expect(config.clip.imageMean == CLIPImageProcessorConfig.openAICLIPMean)
    }

    @Test("Nested processor_config.json layout")
    func nested() throws {
        let config = try Self.parse(#"{"image_processor": {"image_grid_pinpoints": [[56, 112]], "do_pad": false, "crop_size": 56}}"#)
        #expect(config.imageGridPinpoints == [GridResolution(height: 56, width: 112)])
        #expect(!config.doPad)
        #expect(config.tileSide == 56)
    }

    @Test("Bad configurations name the key")
    func badConfigs() {
        #expect(Self.failingKey(#"{"image_grid_pinpoints": []}"#) == "image_grid_pinpoints")
        #expect(Self.failingKey(#"{"image_grid_pinpoints": [[336, 0]]}"#) == "image_grid_pinpoints")
        #expect(Self.failingKey(#"{"image_grid_pinpoints": [[336]]}"#) == "image_grid_pinpoints")
        #expect(Self.failingKey(#"{"image_grid_pinpoints": "336x672"}"#) == "image_grid_pinpoints")
        #expect(Self.failingKey(#"{"size": {"shortest_edge": 0}}"#) == "size")
        #expect(Self.failingKey(#"{"size": {"shortest_edge": -336}}"#) == "size")
        #expect(Self.failingKey(#"{"crop_size": {"height": 0, "width": 336}}"#) == "crop_size")
        #expect(Self.failingKey(#"{"crop_size": -1}"#) == "crop_size")
        #expect(Self.failingKey(#"{"do_pad": "yes"}"#) == "do_pad")
        #expect(Self.failingKey(#"{"resample": 42}"#) == "resample")
        #expect(Self.failingKey("[1, 2]") == "(root)")
    }
}
