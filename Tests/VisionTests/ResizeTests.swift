import Foundation
import Testing
@testable import Vision

@Suite struct ResizeTests {
    @Test("Resized pixels equal PIL's Image.resize", arguments: Fixtures.index?.resized ?? [])
    func resizedPixelsEqualPIL(_ fixture: FixtureIndex.ResizedCase) throws {
        let source = try ImageDecoder.decode(contentsOf: Fixtures.url(fixture.image))
        let filter = try #require(ResamplingFilter(rawValue: fixture.filter))
        let resized = source.resized(width: fixture.width, height: fixture.height, filter: filter)
        #expect(resized.width == fixture.width && resized.height == fixture.height)
        let reference = try Fixtures.bytes(fixture.reference, expectedCount: fixture.width * fixture.height * 3)
        let difference = maxByteDifference(resized.pixels, reference)
        print("[resize] \(fixture.testDescription): max |diff| = \(difference)")
        #expect(difference == 0)
    }

    @Test func sameSizeIsACopy() throws {
        let image = try ImageDecoder.decode(contentsOf: Fixtures.url("images/face_rgb8.png"))
        for filter in ResamplingFilter.allCases {
            #expect(image.resized(width: image.width, height: image.height, filter: filter) == image)
        }
    }

    @Test func uniformImageStaysUniform() {
        // Normalised weights sum to one, so a flat colour survives any filter and scale unchanged.
        let flat = RGBImage(width: 37, height: 23, filledWith: (red: 200, green: 3, blue: 128))
        for filter in ResamplingFilter.allCases {
            for (width, height) in [(11, 7), (100, 61), (37, 5), (1, 1)] {
                let resized = flat.resized(width: width, height: height, filter: filter)
                #expect(resized == RGBImage(width: width, height: height, filledWith: (red: 200, green: 3, blue: 128)),
                        "\(filter) to \(width)×\(height)")
            }
        }
    }

    @Test("Output sizes equal transformers'", arguments: [false, true])
    func outputSizesEqualTransformers(withLongestEdge: Bool) throws {
        let cases = try #require(Fixtures.index?.resizeSizes).filter { ($0.longestEdge != nil) == withLongestEdge }
        #expect(!cases.isEmpty)
        for fixture in cases {
            var config = CLIPImageProcessorConfig()
            config.size = .shortestEdge(fixture.shortestEdge, longestEdge: fixture.longestEdge)
            let size = CLIPImageProcessor(config: config).resizedSize(height: fixture.height, width: fixture.width)
            #expect([size.height, size.width] == fixture.output,
                    "\(fixture.height)×\(fixture.width) shortest \(fixture.shortestEdge) longest \(String(describing: fixture.longestEdge))")
        }
    }
}
