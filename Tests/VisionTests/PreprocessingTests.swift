import Foundation
import Testing
@testable import Vision

@Suite struct PreprocessingTests {
    @Test("pixel_values match CLIPImageProcessor", arguments: Fixtures.index?.pixelValues ?? [])
    func pixelValuesMatchTransformers(_ fixture: FixtureIndex.PixelValuesCase) throws {
        let options = try Fixtures.options(alpha: fixture.alpha, exifOrientation: fixture.exifOrientation)
        let image = try ImageDecoder.decode(contentsOf: Fixtures.url(fixture.image), options: options)
        let processor = CLIPImageProcessor(config: try Fixtures.config(named: fixture.config), padsToSquare: fixture.padToSquare)
        let pixelValues = try processor.preprocess(image)
        try #require([PixelValues.channels, pixelValues.height, pixelValues.width] == fixture.shape)
        let reference = try Fixtures.floats(fixture.reference, expectedCount: fixture.shape.reduce(1, *))
        var largest: Float = 0
        var identical = 0
        for (ours, theirs) in zip(pixelValues.values, reference) {
            largest = max(largest, abs(ours - theirs))
            identical += ours.bitPattern == theirs.bitPattern ? 1 : 0
        }
        print("[pixel_values] \(fixture.testDescription): max |diff| = \(largest), bit-identical \(identical)/\(reference.count)")
        #expect(largest < 1e-3)
    }

    @Test func llavaPaddingColourIsTheTruncatedMean() {
        let processor = CLIPImageProcessor(config: CLIPImageProcessorConfig(), padsToSquare: true)
        let colour = processor.paddingColor
        #expect([colour.red, colour.green, colour.blue] == [122, 116, 104])
    }

    @Test func expandToSquareCentresTheImage() {
        let background = (red: UInt8(9), green: UInt8(8), blue: UInt8(7))
        // 3 wide, 6 tall: (6 - 3) // 2 = 1 column of padding on the left, the other two on the right.
        let tall = RGBImage(width: 3, height: 6, filledWith: (red: 200, green: 100, blue: 50))
        let squaredTall = tall.expandedToSquare(background: background)
        #expect(squaredTall.width == 6 && squaredTall.height == 6)
        for y in 0..<6 {
            for x in 0..<6 {
                let inside = x >= 1 && x < 4
                let pixel = squaredTall[x, y]
                #expect(inside ? pixel == (200, 100, 50) : pixel == (9, 8, 7), "(\(x), \(y))")
            }
        }
        let wide = RGBImage(width: 5, height: 2, filledWith: (red: 1, green: 2, blue: 3))
        let squaredWide = wide.expandedToSquare(background: background)
        #expect(squaredWide.width == 5 && squaredWide.height == 5)
        for y in 0..<5 {
            let inside = y >= 1 && y < 3
            #expect(inside ? squaredWide[0, y] == (1, 2, 3) : squaredWide[0, y] == (9, 8, 7), "row \(y)")
        }
        let square = RGBImage(width: 4, height: 4, filledWith: (red: 5, green: 5, blue: 5))
        #expect(square.expandedToSquare(background: background) == square)
    }

    @Test func centerCropPadsLikeTransformers() {
        // A 3×2 image cropped to 6×5 (width × height): transformers pads ceil(3/2) = 2 rows above and
        // ceil(3/2) = 2 columns to the left, then keeps the window starting at 0.
        var pixels: [UInt8] = []  // (2, 3, 3)
        for value in 1...6 {
            pixels += [UInt8(value), UInt8(value), UInt8(value)]
        }
        let small = RGBImage(width: 3, height: 2, pixels: pixels)
        let cropped = small.centerCropped(height: 5, width: 6)
        #expect(cropped.width == 6 && cropped.height == 5)
        for y in 0..<5 {
            for x in 0..<6 {
                let sourceX = x - 2
                let sourceY = y - 2
                let expected: UInt8 = (0..<3).contains(sourceX) && (0..<2).contains(sourceY) ? UInt8(sourceY * 3 + sourceX + 1) : 0
                #expect(cropped[x, y].red == expected, "(\(x), \(y))")
            }
        }
        // Odd differences round the window start down: (7 - 4) // 2 = 1.
        let row = RGBImage(width: 7, height: 1, pixels: (0..<7).flatMap { [UInt8($0), 0, 0] })
        #expect(row.centerCropped(height: 1, width: 4).pixels.enumerated().filter { $0.offset % 3 == 0 }.map(\.element) == [1, 2, 3, 4])
    }

    @Test func emptyResizeTargetIsRefused() throws {
        var config = CLIPImageProcessorConfig()
        config.size = .shortestEdge(100, longestEdge: 120)
        let sliver = RGBImage(width: 1000, height: 1, filledWith: (red: 0, green: 0, blue: 0))
        #expect(throws: ImageProcessingError.self) { try CLIPImageProcessor(config: config).preprocess(sliver) }
        var tall = CLIPImageProcessorConfig()
        tall.size = .shortestEdge(60_000, longestEdge: nil)
        let column = RGBImage(width: 1, height: 50_000, filledWith: (red: 0, green: 0, blue: 0))
        #expect(throws: ImageProcessingError.self) { try CLIPImageProcessor(config: tall).preprocess(column) }
        let empty = RGBImage(width: 0, height: 0, pixels: [])
        #expect(throws: ImageProcessingError.self) { try CLIPImageProcessor(config: config).preprocess(empty) }
    }
}
