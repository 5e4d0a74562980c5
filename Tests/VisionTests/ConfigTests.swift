import Foundation
import Testing
@testable import Vision

@Suite struct ConfigTests {
    @Test("Parsed like transformers parses it", arguments: Fixtures.index?.configs ?? [])
    func parsedLikeTransformers(_ fixture: FixtureIndex.Config) throws {
        let config = try CLIPImageProcessorConfig.load(contentsOf: Fixtures.url(fixture.file))
        let expected = fixture.parsed
        #expect(config.doResize == expected.doResize)
        switch config.size {
        case .shortestEdge(let shortest, let longest):
            var keys = ["shortest_edge": shortest]
            keys["longest_edge"] = longest
            #expect(keys == expected.size)
        case .exactly(let height, let width):
            #expect(["height": height, "width": width] == expected.size)
        }
        #expect(config.resample.rawValue == expected.resample)
        #expect(config.doCenterCrop == expected.doCenterCrop)
        #expect(["height": config.cropHeight, "width": config.cropWidth] == expected.cropSize)
        #expect(config.doRescale == expected.doRescale)
        #expect(config.rescaleFactor == expected.rescaleFactor)
        #expect(config.doNormalize == expected.doNormalize)
        #expect(config.imageMean == expected.imageMean)
        #expect(config.imageStd == expected.imageStd)
        #expect(config.doConvertRGB == expected.doConvertRgb)
    }

    @Test func llavaConfigHasTheExpectedValues() throws {
        let config = try Fixtures.config(named: "llava-1.5-7b-hf")
        #expect(config.size == .shortestEdge(336, longestEdge: nil))
        #expect(config.cropHeight == 336 && config.cropWidth == 336)
        #expect(config.resample == .bicubic)
        #expect(config.rescaleFactor == 1.0 / 255.0)
        #expect(config.imageMean == CLIPImageProcessorConfig.openAICLIPMean)
        #expect(config.imageStd == CLIPImageProcessorConfig.openAICLIPStandardDeviation)
    }

    @Test func nestedProcessorConfigEqualsTheFlatOne() throws {
        let nested = try Fixtures.config(named: "llava-1.5-7b-hf-processor")
        let flat = try Fixtures.config(named: "llava-1.5-7b-hf")
        #expect(nested == flat)
        let text = try String(contentsOf: Fixtures.url("configs/llava-1.5-7b-hf-processor/processor_config.json"), encoding: .utf8)
        #expect(text.contains("\"image_processor\""))
    }

    @Test func absentAndNullKeysTakeTheClassDefaults() throws {
        let config = try CLIPImageProcessorConfig.parse(Data(#"{"size": null, "image_mean": null, "foo": [1, 2]}"#.utf8))
        #expect(config == CLIPImageProcessorConfig())
        #expect(config.size == .shortestEdge(224, longestEdge: nil))
        #expect(config.cropHeight == 224 && config.cropWidth == 224)
    }

    @Test func sizeForms() throws {
        func size(_ json: String) throws -> ResizeTarget {
            try CLIPImageProcessorConfig.parse(Data(json.utf8)).size
        }
        #expect(try size(#"{"size": 50}"#) == .shortestEdge(50, longestEdge: nil))
        #expect(try size(#"{"size": 50, "default_to_square": true}"#) == .exactly(height: 50, width: 50))
        #expect(try size(#"{"size": [30, 40]}"#) == .exactly(height: 30, width: 40))
        #expect(try size(#"{"size": {"height": 30, "width": 40}}"#) == .exactly(height: 30, width: 40))
        #expect(try size(#"{"size": {"shortest_edge": 30, "longest_edge": 40}}"#) == .shortestEdge(30, longestEdge: 40))
    }

    @Test func encodingRoundTrips() throws {
        var config = CLIPImageProcessorConfig()
        config.size = .shortestEdge(80, longestEdge: 100)
        config.resample = .lanczos
        config.cropHeight = 7
        config.imageMean = [0.1, 0.2, 0.3]
        let encoded = try JSONEncoder().encode(config)
        #expect(try CLIPImageProcessorConfig.parse(encoded) == config)
        config.size = .exactly(height: 3, width: 4)
        #expect(try CLIPImageProcessorConfig.parse(try JSONEncoder().encode(config)) == config)
    }

    @Test("Invalid configuration is refused with the file and the reason", arguments: [
        (#"{"resample": 0}"#, "resample 0"),
        (#"{"resample": 9}"#, "resample 9"),
        (#"{"size": {"longest_edge": 5}}"#, "size keys"),
        (#"{"size": {"height": 5}}"#, "size keys"),
        (#"{"size": -3}"#, "positive"),
        (#"{"size": {"shortest_edge": 9000000000000}}"#, "at most 65536"),
        (#"{"crop_size": {"height": 0, "width": 4}}"#, "positive"),
        (#"{"image_mean": [0.5, 0.5]}"#, "3 values"),
        (#"{"image_std": [0.5, 0, 0.5]}"#, "must not contain 0"),
        (#"{"do_resize": "yes"}"#, "do_resize"),
        (#"{"image_processor": 12}"#, "image_processor"),
        (#"{"size": "#, "JSON"),
    ])
    func invalidConfigurationIsRefused(json: String, reasonFragment: String) {
        do {
            let config = try CLIPImageProcessorConfig.parse(Data(json.utf8), file: "bad/preprocessor_config.json")
            Issue.record("parsed \(config) from \(json)")
        } catch {
            #expect(error.file == "bad/preprocessor_config.json")
            #expect(error.description.contains(reasonFragment), "\(error)")
        }
    }

    @Test func missingConfigFileIsNamed() throws {
        let url = try Fixtures.url("configs/none/preprocessor_config.json")
        #expect(throws: ImageProcessorConfigError.self) { try CLIPImageProcessorConfig.load(contentsOf: url) }
        do {
            _ = try CLIPImageProcessorConfig.load(contentsOf: url)
        } catch {
            #expect(error.file == url.path)
        }
    }

    /// A malformed preprocessor config is described in JSON's words, naming the key.
    @Test func badPreprocessorConfigIsDescribedInWords() throws {
        do {
            _ = try CLIPImageProcessorConfig.parse(Data(#"{"image_mean": "x"}"#.utf8), file: "pp.json")
            Issue.record("accepted a string image_mean")
        } catch {
            #expect("\(error)".contains("image_mean") && !"\(error)".contains("Expected to decode"), "\(error)")
            #expect(!"\(error)".contains("Array<"), "\(error)")
        }
    }

}
