import Evaluation
import Foundation
import Testing
import TestSupport
import Vision

@Suite struct PlotTests {
    static let pyramidDrop = PlotSeries(
        name: "PyramidDrop", color: PlotColor.palette[0],
        points: [PlotPoint(x: 3, y: 63), PlotPoint(x: 1, y: 60), PlotPoint(x: 2, y: 62), PlotPoint(x: 4, y: 63.5)])
    static let fastV = PlotSeries(
        name: "FastV", color: PlotColor.palette[1],
        points: [PlotPoint(x: 1, y: 55), PlotPoint(x: 2, y: 58), PlotPoint(x: 3, y: 61), PlotPoint(x: 4, y: 63)])
    static let figure = LinePlot(
        title: "TextVQA accuracy vs. TFLOPs", xLabel: "TFLOPs", yLabel: "Accuracy (%)",
        series: [pyramidDrop, fastV])

    /// The pixel `render()` puts at the middle of the segment between two data points: the midpoint of the
    /// endpoints' pixels, each rounded as the line drawing rounds them.
    static func segmentMidpoint(_ start: PlotPoint, _ end: PlotPoint, in layout: PlotLayout) -> (x: Int, y: Int) {
        let from = layout.pixel(for: start)
        let to = layout.pixel(for: end)
        return (
            Int(((from.x.rounded() + to.x.rounded()) / 2).rounded()),
            Int(((from.y.rounded() + to.y.rounded()) / 2).rounded())
        )
    }

    static func hasColor(_ image: RGBImage, x: Int, y: Int, _ color: PlotColor) -> Bool {
        let pixel = image[x, y]
        return pixel.red == color.red && pixel.green == color.green && pixel.blue == color.blue
    }

    static func pixelCount(_ image: RGBImage, in rect: PixelRect, where matches: (RGBColor) -> Bool) -> Int {
        var count = 0
        for y in max(0, rect.top)..<min(image.height, rect.bottom) {
            for x in max(0, rect.left)..<min(image.width, rect.right) where matches(image[x, y]) {
                count += 1
            }
        }
        return count
    }

    static func isDark(_ pixel: RGBColor) -> Bool {
        pixel.red < 100 && pixel.green < 100 && pixel.blue < 100
    }

    @Test func ticksStepByOneTwoOrFiveTimesAPowerOfTen() {
        let unit = AxisTicks.nice(from: 0, to: 4)
        #expect(unit.values == [0, 1, 2, 3, 4])
        #expect(unit.labels == ["0", "1", "2", "3", "4"])
        #expect(AxisTicks.nice(from: 0.3, to: 9.7).values == [0, 2, 4, 6, 8, 10])
        let narrow = AxisTicks.nice(from: 85.1, to: 85.9)
        #expect(narrow.values == [85.0, 85.2, 85.4, 85.6, 85.8, 86.0])
        #expect(narrow.labels == ["85.0", "85.2", "85.4", "85.6", "85.8", "86.0"])
        #expect(AxisTicks.nice(from: -0.7, to: 0.2).labels == ["-0.8", "-0.6", "-0.4", "-0.2", "0.0", "0.2"])
    }

    @Test func degenerateRangesStillGiveAnIncreasingAxis() throws {
        for value in [3.0, 0, -250, 1e-9] {
            let ticks = AxisTicks.nice(from: value, to: value)
            #expect(ticks.values.count >= 2)
            #expect(try #require(ticks.values.first) < value && value < ticks.values.last!)
            #expect(zip(ticks.values, ticks.values.dropFirst()).allSatisfy { $0 < $1 })
        }
        #expect(AxisTicks.nice(from: .nan, to: 1).values == [0, 1])
        #expect(AxisTicks.nice(from: 9.7, to: 0.3).values == [0, 2, 4, 6, 8, 10])
    }

    @Test func rendersSeriesLinesLegendAndTitle() {
        let layout = Self.figure.layout()
        let image = Self.figure.render()
        #expect(image.width == 800 && image.height == 520)
        for (x, y) in [(0, 0), (799, 0), (0, 519), (799, 519)] {
            #expect(Self.hasColor(image, x: x, y: y, .white))
        }
        // The lines run through the points sorted by x, wherever they were given in the series.
        for (series, segment) in [(Self.pyramidDrop, (1, 2)), (Self.pyramidDrop, (2, 3)), (Self.fastV, (1, 2))] {
            let points = series.points.sorted { $0.x < $1.x }
            let middle = Self.segmentMidpoint(points[segment.0], points[segment.1], in: layout)
            #expect(Self.hasColor(image, x: middle.x, y: middle.y, series.color), "\(series.name) \(segment)")
        }
        // Markers sit on the data points.
        let firstPoint = layout.pixel(for: PlotPoint(x: 1, y: 55))
        #expect(Self.hasColor(image, x: Int(firstPoint.x.rounded()) + 3, y: Int(firstPoint.y.rounded()), Self.fastV.color))

        let legend = try! #require(layout.legend)
        #expect(layout.plotArea.contains(x: legend.left, y: legend.top))
        for series in [Self.pyramidDrop, Self.fastV] {
            let swatch = Self.pixelCount(image, in: legend) { $0 == (series.color.red, series.color.green, series.color.blue) }
            #expect(swatch > 20, "\(series.name) in the legend")
        }
        #expect(Self.pixelCount(image, in: legend, where: Self.isDark) > 100, "legend names")

        let titleBand = PixelRect(left: 0, top: 0, width: image.width, height: layout.plotArea.top)
        #expect(Self.pixelCount(image, in: titleBand, where: Self.isDark) > 100)
        var untitled = Self.figure
        untitled.title = ""
        #expect(Self.pixelCount(untitled.render(), in: titleBand, where: Self.isDark) == 0)
    }

    @Test func tickNumbersAreDrawnBelowTheirTicks() {
        let layout = Self.figure.layout()
        let image = Self.figure.render()
        #expect(layout.xTicks.values == [1, 2, 3, 4])
        // Under each x tick, the label band holds the dark pixels of its number.
        let labelTop = layout.plotArea.bottom + 10
        for tick in layout.xTicks.values {
            let x = Int(layout.pixel(for: PlotPoint(x: tick, y: 60)).x.rounded())
            let under = PixelRect(left: x - 4, top: labelTop, width: 9, height: 18)
            #expect(Self.pixelCount(image, in: under, where: Self.isDark) > 5, "label of \(tick)")
        }
    }

    @Test func degenerateInputsDoNotCrash() {
        let long = String(repeating: "Very long method name ", count: 20)
        let inputs: [[PlotSeries]] = [
            [],
            [PlotSeries(name: "one point", color: PlotColor.palette[2], points: [PlotPoint(x: 5, y: 5)])],
            [PlotSeries(name: "same x", color: PlotColor.palette[3], points: [PlotPoint(x: 2, y: 1), PlotPoint(x: 2, y: 9)])],
            [PlotSeries(name: "same y", color: PlotColor.palette[4], points: [PlotPoint(x: 1, y: 7), PlotPoint(x: 9, y: 7)])],
            [PlotSeries(name: "no points", color: PlotColor.palette[5], points: [])],
            [PlotSeries(name: long + "\u{1F600}", color: PlotColor.palette[6], points: [PlotPoint(x: -1e300, y: 1e300), PlotPoint(x: 1e300, y: -1e300)])],
        ]
        for series in inputs {
            for (width, height) in [(800, 520), (120, 90), (3, 2), (0, 0)] {
                let plot = LinePlot(title: long, xLabel: long, yLabel: long, series: series, width: width, height: height)
                let image = plot.render()
                #expect(image.width == width && image.height == height)
            }
        }
        let single = LinePlot(title: "", xLabel: "", yLabel: "", series: [inputs[1][0]])
        let center = single.layout().pixel(for: PlotPoint(x: 5, y: 5))
        #expect(Self.hasColor(single.render(), x: Int(center.x.rounded()), y: Int(center.y.rounded()), PlotColor.palette[2]))

        let longNamed = LinePlot(title: "", xLabel: "", yLabel: "", series: inputs[5])
        let legend = try! #require(longNamed.layout().legend)
        #expect(legend.width < 400, "a long name is cut short in the legend")
    }

    @Test func nonFinitePointsAreSkippedAndTheRestDrawn() {
        let color = PlotColor.palette[3]
        let series = PlotSeries(
            name: "gappy", color: color,
            points: [PlotPoint(x: 0, y: 1), PlotPoint(x: .nan, y: 2), PlotPoint(x: 1, y: .infinity), PlotPoint(x: 2, y: 3)])
        let plot = LinePlot(title: "t", xLabel: "x", yLabel: "y", series: [series])
        let layout = plot.layout()
        #expect(layout.xTicks.values.first == 0 && layout.xTicks.values.last == 2)
        #expect(layout.yTicks.values.first == 1 && layout.yTicks.values.last == 3)
        let middle = Self.segmentMidpoint(PlotPoint(x: 0, y: 1), PlotPoint(x: 2, y: 3), in: layout)
        #expect(Self.hasColor(plot.render(), x: middle.x, y: middle.y, color))
    }

    @Test func pngRoundTripKeepsEveryPixel() throws {
        let directory = try makeTemporaryDirectory("plot")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("figure4.png")
        let image = Self.figure.render()
        try PNGEncoder.write(image, to: file)
        #expect(try ImageDecoder.decode(contentsOf: file) == image)
    }
}
