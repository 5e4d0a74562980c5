import Foundation
import Vision

/// An 8-bit RGB colour for plot elements.
public struct PlotColor: Equatable, Hashable, Sendable {
    public var red: UInt8
    public var green: UInt8
    public var blue: UInt8

    public init(red: UInt8, green: UInt8, blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    public static let white = PlotColor(red: 255, green: 255, blue: 255)
    public static let black = PlotColor(red: 0, green: 0, blue: 0)

    /// matplotlib's "tab10" colours, so our figures read like the paper's.
    public static let palette: [PlotColor] = [
        PlotColor(red: 31, green: 119, blue: 180), PlotColor(red: 255, green: 127, blue: 14),
        PlotColor(red: 44, green: 160, blue: 44), PlotColor(red: 214, green: 39, blue: 40),
        PlotColor(red: 148, green: 103, blue: 189), PlotColor(red: 140, green: 86, blue: 75),
        PlotColor(red: 227, green: 119, blue: 194), PlotColor(red: 127, green: 127, blue: 127),
        PlotColor(red: 188, green: 189, blue: 34), PlotColor(red: 23, green: 190, blue: 207),
    ]
}

/// A point in data coordinates.
public struct PlotPoint: Equatable, Sendable {
    public var x: Double
    public var y: Double

    public init(x: Double, y: Double) {
        self.x = x
        self.y = y
    }

    var isFinite: Bool { x.isFinite && y.isFinite }
}

/// One method's line: its name (legend), colour, and points in data coordinates.
public struct PlotSeries: Equatable, Sendable {
    public var name: String
    public var color: PlotColor
    /// In any order (the line is drawn through them sorted by x); points with a NaN or infinite coordinate are
    /// left out.
    public var points: [PlotPoint]

    public init(name: String, color: PlotColor, points: [PlotPoint]) {
        self.name = name
        self.color = color
        self.points = points
    }

    /// The finite points sorted by x: the order the polyline visits them.
    var drawablePoints: [PlotPoint] {
        points.filter(\.isFinite).sorted { $0.x < $1.x }
    }
}

/// The tick values of one axis: evenly spaced at a 1, 2 or 5 times a power of ten, the first at or below
/// the data's lowest value and the last at or above its highest, so the axis range is the ticks' range.
public struct AxisTicks: Equatable, Sendable {
    public let values: [Double]
    /// Decimal places that tell every tick apart (0 for whole steps, 1 for steps of 0.5 or 0.2, ...).
    public let fractionDigits: Int

    /// The labels printed next to the ticks.
    public var labels: [String] { values.map(label(for:)) }

    var lower: Double { values.first ?? 0 }
    var upper: Double { values.last ?? 1 }

    /// `value` printed as its tick label: fixed decimals, or three significant digits where the values are too
    /// large or the steps too fine for fixed decimals to stay short.
    public func label(for value: Double) -> String {
        let zeroWithoutSign = value == 0 ? 0 : value  // so -0.0 does not print as "-0"
        if fractionDigits > 6 || values.contains(where: { abs($0) >= 1e7 }) {
            return String(format: "%.3g", zeroWithoutSign)
        }
        return String(format: "%.\(fractionDigits)f", zeroWithoutSign)
    }

    /// Nice ticks covering `lower`...`upper`, about `targetIntervals` steps apart. A zero-width range is
    /// widened by one power of ten of its value (by 1 around zero) so it still gets an axis; non-finite bounds
    /// give the ticks 0 and 1.
    public static func nice(from lower: Double, to upper: Double, targetIntervals: Int = 5) -> AxisTicks {
        guard lower.isFinite, upper.isFinite else {
            return AxisTicks(values: [0, 1], fractionDigits: 0)
        }
        var low = min(lower, upper)
        var high = max(lower, upper)
        if high - low <= Swift.max(abs(low), abs(high)) * 1e-12 {
            let magnitude = low == 0 ? 1 : pow(10, (log10(abs(low))).rounded(.down))
            low -= magnitude
            high += magnitude
        }
        let span = high - low
        guard span.isFinite, span > 0 else {
            return AxisTicks(values: [low, high], fractionDigits: 0)
        }
        let roughStep = span / Double(Swift.max(1, targetIntervals))
        var exponent = Int(log10(roughStep).rounded(.down))
        let residual = roughStep / powerOfTen(exponent)
        let multiplier: Double
        switch residual {
        case ...1: multiplier = 1
        case ...2: multiplier = 2
        case ...5: multiplier = 5
        default:
            multiplier = 1
            exponent += 1
        }
        // A tick is (index × multiplier) scaled by a power of ten in one rounding, so 0.2 × 426 prints and
        // compares as 85.2, not 85.20000000000002.
        func tick(_ index: Double) -> Double {
            let scaledIndex = index * multiplier
            return exponent >= 0 ? scaledIndex * powerOfTen(exponent) : scaledIndex / powerOfTen(-exponent)
        }
        let step = multiplier * powerOfTen(exponent)
        let firstIndex = (low / step).rounded(.down)
        let lastIndex = (high / step).rounded(.up)
        let count = Int(Swift.min(lastIndex - firstIndex, 100)) + 1
        let values = (0..<count).map { tick(firstIndex + Double($0)) }
        return AxisTicks(values: values, fractionDigits: Swift.max(0, -exponent))
    }

    private static func powerOfTen(_ exponent: Int) -> Double {
        pow(10, Double(exponent))
    }
}

/// A rectangle of pixels: columns `left..<left + width`, rows `top..<top + height`.
public struct PixelRect: Equatable, Sendable {
    public var left: Int
    public var top: Int
    public var width: Int
    public var height: Int

    public init(left: Int, top: Int, width: Int, height: Int) {
        self.left = left
        self.top = top
        self.width = Swift.max(0, width)
        self.height = Swift.max(0, height)
    }

    public var right: Int { left + width }
    public var bottom: Int { top + height }

    public func contains(x: Int, y: Int) -> Bool {
        x >= left && x < right && y >= top && y < bottom
    }

    func contains(x: Double, y: Double) -> Bool {
        x >= Double(left) && x < Double(right) && y >= Double(top) && y < Double(bottom)
    }

    func intersection(_ other: PixelRect) -> PixelRect {
        let newLeft = Swift.max(left, other.left)
        let newTop = Swift.max(top, other.top)
        return PixelRect(
            left: newLeft, top: newTop, width: Swift.min(right, other.right) - newLeft,
            height: Swift.min(bottom, other.bottom) - newTop)
    }

    func insetBy(_ amount: Int) -> PixelRect {
        PixelRect(left: left + amount, top: top + amount, width: width - 2 * amount, height: height - 2 * amount)
    }
}

/// Where everything of a `LinePlot` goes in the image: the framed plot area, the ticks, the legend box, and
/// the mapping from data to pixel coordinates that `render()` draws with (and tests sample with).
public struct PlotLayout: Equatable, Sendable {
    /// The framed area the series are drawn (and clipped) in.
    public let plotArea: PixelRect
    public let xTicks: AxisTicks
    public let yTicks: AxisTicks
    /// Nil when there are no series to list.
    public let legend: PixelRect?

    /// The data range maps onto the plot area less this margin, so markers at the extreme ticks stay whole.
    static let dataInset = 8

    /// The pixel position (column, row; fractional) of a point in data coordinates: the x ticks' range spans
    /// the inset plot area left to right, the y ticks' range bottom to top.
    public func pixel(for point: PlotPoint) -> (x: Double, y: Double) {
        let inner = plotArea.insetBy(Self.dataInset)
        let xFraction = (point.x - xTicks.lower) / (xTicks.upper - xTicks.lower)
        let yFraction = (point.y - yTicks.lower) / (yTicks.upper - yTicks.lower)
        return (
            Double(inner.left) + xFraction * Double(Swift.max(0, inner.width - 1)),
            Double(inner.bottom - 1) - yFraction * Double(Swift.max(0, inner.height - 1))
        )
    }
}

/// A line chart in the style of the paper's Figure 4 (accuracy against cost, one line per method), drawn
/// pixel by pixel so reports need no plotting library.
public struct LinePlot: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [PlotSeries]
    /// Image size in pixels; negative sizes are treated as 0.
    public var width = 800
    public var height = 520

    public init(title: String, xLabel: String, yLabel: String, series: [PlotSeries], width: Int = 800, height: Int = 520) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.width = width
        self.height = height
    }

    // Every text is drawn with each font pixel a 2×2 square: 10×14-pixel glyphs.
    static let textScale = 2
    static let textHeight = BitmapFont.glyphHeight * textScale
    static let tickLength = 6
    static let gap = 8
    static let markerRadius = 4
    static let lineThickness = 2
    static let legendSwatchWidth = 28
    static let legendMaximumNameWidth = 280
    static let gridColor = PlotColor(red: 225, green: 225, blue: 225)
    static let frameColor = PlotColor(red: 60, green: 60, blue: 60)
    static let textColor = PlotColor(red: 20, green: 20, blue: 20)

    /// Where the plot area, ticks and legend go for this plot's data and size.
    public func layout() -> PlotLayout {
        let finitePoints = series.flatMap(\.drawablePoints)
        let xs = finitePoints.map(\.x)
        let ys = finitePoints.map(\.y)
        let xTicks = AxisTicks.nice(from: xs.min() ?? 0, to: xs.max() ?? 1)
        let yTicks = AxisTicks.nice(from: ys.min() ?? 0, to: ys.max() ?? 1)

        let widestYTickLabel = yTicks.labels.map { BitmapFont.width(of: $0, scale: Self.textScale) }.max() ?? 0
        // Left to right: gap, rotated y label, gap, tick labels, gap, tick marks, frame.
        let left = Self.gap + Self.textHeight + Self.gap + widestYTickLabel + Self.gap + Self.tickLength
        // Top to bottom: gap, title, two gaps; below the frame: tick marks, gap, tick labels, gap, x label, gap.
        let top = 3 * Self.gap + Self.textHeight
        let below = Self.tickLength + 2 * Self.gap + 2 * Self.textHeight + Self.gap
        let plotArea = PixelRect(
            left: left, top: top, width: Swift.max(0, width) - left - 3 * Self.gap,
            height: Swift.max(0, height) - top - below)
        let withoutLegend = PlotLayout(plotArea: plotArea, xTicks: xTicks, yTicks: yTicks, legend: nil)
        guard !series.isEmpty else { return withoutLegend }
        return PlotLayout(
            plotArea: plotArea, xTicks: xTicks, yTicks: yTicks,
            legend: legendPlacement(in: withoutLegend))
    }

    /// The legend box in whichever corner of the plot area covers the fewest samples of the drawn lines
    /// (top right on a tie), the way matplotlib's `loc="best"` avoids hiding data.
    func legendPlacement(in layout: PlotLayout) -> PixelRect {
        let nameWidth = series.map { BitmapFont.width(of: legendName($0.name), scale: Self.textScale) }.max() ?? 0
        let boxWidth = Self.gap + Self.legendSwatchWidth + Self.gap + nameWidth + Self.gap
        let boxHeight = Self.gap + series.count * (Self.textHeight + Self.gap)
        let area = layout.plotArea
        let margin = Self.gap + 2
        let lefts = [area.right - margin - boxWidth, area.left + margin]
        let tops = [area.top + margin, area.bottom - margin - boxHeight]
        let corners = tops.flatMap { top in
            lefts.map { PixelRect(left: $0, top: top, width: boxWidth, height: boxHeight) }
        }
        var lineSamples: [(x: Double, y: Double)] = []
        for points in series.map(\.drawablePoints) {
            let pixels = points.map(layout.pixel(for:))
            lineSamples += pixels
            for (start, end) in zip(pixels, pixels.dropFirst()) {
                lineSamples += (1..<16).map { step in
                    let fraction = Double(step) / 16
                    return (start.x + (end.x - start.x) * fraction, start.y + (end.y - start.y) * fraction)
                }
            }
        }
        func coveredSamples(_ box: PixelRect) -> Int {
            lineSamples.count { box.contains(x: $0.x, y: $0.y) }
        }
        return corners.min { coveredSamples($0) < coveredSamples($1) } ?? corners[0]
    }

    /// A series name as the legend shows it: cut short with "..." beyond the legend's width.
    func legendName(_ name: String) -> String {
        BitmapFont.fitted(name, maximumWidth: Self.legendMaximumNameWidth, scale: Self.textScale)
    }

    /// The plot as an image: white background, axes with "nice" tick values (1-2-5 steps) and their numbers,
    /// grid lines, each series as a polyline (sorted by x) with a marker at every point, a legend box, the
    /// title and axis labels.
    public func render() -> RGBImage {
        let layout = layout()
        var canvas = Canvas(width: Swift.max(0, width), height: Swift.max(0, height), background: .white)
        let area = layout.plotArea
        let tickPixels = (
            x: layout.xTicks.values.map { layout.pixel(for: PlotPoint(x: $0, y: layout.yTicks.lower)).x },
            y: layout.yTicks.values.map { layout.pixel(for: PlotPoint(x: layout.xTicks.lower, y: $0)).y }
        )

        // Grid and tick marks.
        for x in tickPixels.x.compactMap(Canvas.pixelIndex) {
            canvas.fill(PixelRect(left: x, top: area.top, width: 1, height: area.height), with: Self.gridColor)
            canvas.fill(PixelRect(left: x, top: area.bottom, width: 1, height: Self.tickLength), with: Self.frameColor)
        }
        for y in tickPixels.y.compactMap(Canvas.pixelIndex) {
            canvas.fill(PixelRect(left: area.left, top: y, width: area.width, height: 1), with: Self.gridColor)
            canvas.fill(
                PixelRect(left: area.left - Self.tickLength, top: y, width: Self.tickLength, height: 1),
                with: Self.frameColor)
        }
        canvas.outline(area, with: Self.frameColor)

        // Tick labels: centred under x ticks (moved in where the outermost would leave the image),
        // right-aligned left of y ticks.
        for (label, x) in zip(layout.xTicks.labels, tickPixels.x) {
            guard let column = Canvas.pixelIndex(x) else { continue }
            let labelWidth = BitmapFont.width(of: label, scale: Self.textScale)
            let left = Swift.max(0, Swift.min(column - labelWidth / 2, canvas.bounds.width - labelWidth))
            canvas.draw(label, left: left, top: area.bottom + Self.tickLength + Self.gap, color: Self.textColor)
        }
        for (label, y) in zip(layout.yTicks.labels, tickPixels.y) {
            guard let row = Canvas.pixelIndex(y) else { continue }
            let labelWidth = BitmapFont.width(of: label, scale: Self.textScale)
            canvas.draw(
                label, left: area.left - Self.tickLength - Self.gap - labelWidth, top: row - Self.textHeight / 2,
                color: Self.textColor)
        }

        // Series: lines first, then markers on top, all kept inside the frame.
        canvas.clip = area.insetBy(1)
        for plotted in series {
            let pixels = plotted.drawablePoints.map(layout.pixel(for:))
            for (start, end) in zip(pixels, pixels.dropFirst()) {
                canvas.drawLine(from: start, to: end, thickness: Self.lineThickness, color: plotted.color)
            }
            for point in pixels {
                canvas.drawDisc(center: point, radius: Self.markerRadius, color: plotted.color)
            }
        }
        canvas.clip = canvas.bounds

        if let legend = layout.legend {
            drawLegend(in: legend, on: &canvas)
        }

        // Title centred above the plot area; axis labels centred on their axes, the y label reading upwards.
        let fullWidth = canvas.bounds.width - 2 * Self.gap
        let title = BitmapFont.fitted(title, maximumWidth: fullWidth, scale: Self.textScale)
        canvas.draw(
            title, left: (canvas.bounds.width - BitmapFont.width(of: title, scale: Self.textScale)) / 2,
            top: Self.gap, color: Self.textColor)
        let xLabel = BitmapFont.fitted(xLabel, maximumWidth: area.width, scale: Self.textScale)
        canvas.draw(
            xLabel, left: area.left + (area.width - BitmapFont.width(of: xLabel, scale: Self.textScale)) / 2,
            top: area.bottom + Self.tickLength + 2 * Self.gap + Self.textHeight, color: Self.textColor)
        let yLabel = BitmapFont.fitted(yLabel, maximumWidth: area.height, scale: Self.textScale)
        canvas.draw(
            yLabel, left: Self.gap,
            top: area.bottom - (area.height - BitmapFont.width(of: yLabel, scale: Self.textScale)) / 2,
            color: Self.textColor, upwards: true)
        return canvas.image
    }

    /// A framed white box with, per series, a short line with its marker in the series' colour and the name.
    private func drawLegend(in box: PixelRect, on canvas: inout Canvas) {
        canvas.fill(box, with: .white)
        canvas.outline(box, with: Self.frameColor)
        for (index, entry) in series.enumerated() {
            let top = box.top + Self.gap + index * (Self.textHeight + Self.gap)
            let middle = Double(top + Self.textHeight / 2)
            let swatchLeft = Double(box.left + Self.gap)
            let swatchRight = swatchLeft + Double(Self.legendSwatchWidth)
            canvas.drawLine(
                from: (swatchLeft, middle), to: (swatchRight, middle), thickness: Self.lineThickness,
                color: entry.color)
            canvas.drawDisc(center: ((swatchLeft + swatchRight) / 2, middle), radius: Self.markerRadius, color: entry.color)
            canvas.draw(
                legendName(entry.name), left: box.left + 2 * Self.gap + Self.legendSwatchWidth, top: top,
                color: Self.textColor)
        }
    }
}

/// A pixel buffer that the plot draws into; every write outside `clip` (and the image) is dropped, so
/// callers never bounds-check.
struct Canvas {
    let bounds: PixelRect
    var clip: PixelRect {
        didSet { clip = clip.intersection(bounds) }
    }
    private var pixels: [UInt8]  // (height, width, 3)

    init(width: Int, height: Int, background: PlotColor) {
        bounds = PixelRect(left: 0, top: 0, width: width, height: height)
        clip = bounds
        pixels = RGBImage(width: width, height: height, filledWith: (background.red, background.green, background.blue)).pixels
    }

    var image: RGBImage {
        RGBImage(width: bounds.width, height: bounds.height, pixels: pixels)
    }

    /// The pixel column or row holding a fractional coordinate; nil for NaN or infinity. Far-off values are
    /// clamped, which keeps `Int(_:)` from trapping and loops short; clipping then drops them.
    static func pixelIndex(_ coordinate: Double) -> Int? {
        guard coordinate.isFinite else { return nil }
        return Int(Swift.min(Swift.max(coordinate.rounded(), -100_000), 100_000))
    }

    mutating func set(x: Int, y: Int, color: PlotColor) {
        guard clip.contains(x: x, y: y) else { return }
        let offset = (y * bounds.width + x) * 3
        pixels[offset] = color.red
        pixels[offset + 1] = color.green
        pixels[offset + 2] = color.blue
    }

    mutating func fill(_ rect: PixelRect, with color: PlotColor) {
        let visible = rect.intersection(clip)
        for y in visible.top..<visible.bottom {
            for x in visible.left..<visible.right {
                set(x: x, y: y, color: color)
            }
        }
    }

    /// A one-pixel border just inside `rect`.
    mutating func outline(_ rect: PixelRect, with color: PlotColor) {
        fill(PixelRect(left: rect.left, top: rect.top, width: rect.width, height: 1), with: color)
        fill(PixelRect(left: rect.left, top: rect.bottom - 1, width: rect.width, height: 1), with: color)
        fill(PixelRect(left: rect.left, top: rect.top, width: 1, height: rect.height), with: color)
        fill(PixelRect(left: rect.right - 1, top: rect.top, width: 1, height: rect.height), with: color)
    }

    /// Bresenham's line between the pixels holding `start` and `end`, stamped with a `thickness`-wide
    /// square pen; a segment with a non-finite end is skipped.
    mutating func drawLine(
        from start: (x: Double, y: Double), to end: (x: Double, y: Double), thickness: Int, color: PlotColor
    ) {
        guard var x = Self.pixelIndex(start.x), var y = Self.pixelIndex(start.y),
            let endX = Self.pixelIndex(end.x), let endY = Self.pixelIndex(end.y)
        else { return }
        let penOffsets = (-(thickness - 1) / 2)...(thickness / 2)
        let deltaX = abs(endX - x)
        let deltaY = -abs(endY - y)
        let stepX = x < endX ? 1 : -1
        let stepY = y < endY ? 1 : -1
        var error = deltaX + deltaY
        while true {
            for penY in penOffsets {
                for penX in penOffsets {
                    set(x: x + penX, y: y + penY, color: color)
                }
            }
            if x == endX && y == endY { break }
            let doubledError = 2 * error
            if doubledError >= deltaY {
                error += deltaY
                x += stepX
            }
            if doubledError <= deltaX {
                error += deltaX
                y += stepY
            }
        }
    }

    /// A filled circle: the pixels whose centres lie within `radius` of the pixel holding `center`.
    mutating func drawDisc(center: (x: Double, y: Double), radius: Int, color: PlotColor) {
        guard let centerX = Self.pixelIndex(center.x), let centerY = Self.pixelIndex(center.y) else { return }
        for offsetY in -radius...radius {
            for offsetX in -radius...radius where offsetX * offsetX + offsetY * offsetY <= radius * radius {
                set(x: centerX + offsetX, y: centerY + offsetY, color: color)
            }
        }
    }

    /// `text` in the bitmap font at `LinePlot.textScale`, its top-left corner at (`left`, `top`). With
    /// `upwards` the text is turned a quarter counter-clockwise, reading bottom to top from (`left`, `top`)
    /// as its bottom-left corner, as a y-axis label reads.
    mutating func draw(_ text: String, left: Int, top: Int, color: PlotColor, upwards: Bool = false) {
        let scale = LinePlot.textScale
        for (index, character) in text.enumerated() {
            let rows = BitmapFont.rows(of: character)
            for (row, bits) in rows.enumerated() {
                for column in 0..<BitmapFont.glyphWidth where bits & (0x10 >> column) != 0 {
                    // Position along the text and across it, in font pixels.
                    let along = index * BitmapFont.advance + column
                    let square =
                        upwards
                        ? PixelRect(left: left + row * scale, top: top - (along + 1) * scale, width: scale, height: scale)
                        : PixelRect(left: left + along * scale, top: top + row * scale, width: scale, height: scale)
                    fill(square, with: color)
                }
            }
        }
    }
}
