import Foundation
import Models
import Vision

/// The paper's Figure 5: the image as the vision tower sees it, once before any drop and once
/// after each drop, with the patches whose tokens were dropped dimmed.
public enum KeptTokensPicture {
    /// Pixels of the gap between panels and rows.
    static let gap = 6
    /// Dropped patches keep this fraction of their brightness.
    static let dimming: Float = 0.2

    /// One row of panels for one image: `image` (resized and cropped like the model's input),
    /// `keptPerDrop[s]` the surviving token indices after drop s (row-major over `grid`, each
    /// token an equal rectangle of the image). The patches of `outlined` (e.g.
    /// the objects a question is about) get a magenta border in every panel.
    public static func render(image: RGBImage, grid: TokenGrid, keptPerDrop: [[Int]], outlined: Set<Int> = []) -> RGBImage {
        let side = image.width
        let cell = (width: side / max(grid.columns, 1), height: image.height / max(grid.rows, 1))
        let panels = keptPerDrop.count + 1
        let width = panels * side + (panels - 1) * gap
        var pixels = [UInt8](repeating: 255, count: width * image.height * 3)  // (height, width, 3), white gaps
        for panel in 0..<panels {
            var kept = [Bool](repeating: true, count: grid.rows * grid.columns)  // (tokens,)
            if panel > 0 {
                kept = [Bool](repeating: false, count: kept.count)
                for index in keptPerDrop[panel - 1] where index < kept.count { kept[index] = true }
            }
            let left = panel * (side + gap)
            for y in 0..<image.height {
                for x in 0..<side {
                    let patchIndex = min(y / cell.height, grid.rows - 1) * grid.columns + min(x / cell.width, grid.columns - 1)
                    let factor: Float = kept[patchIndex] ? 1 : dimming
                    for channel in 0..<3 {
                        let value = Float(image.pixels[(y * image.width + x) * 3 + channel]) * factor
                        pixels[(y * width + left + x) * 3 + channel] = UInt8(value.rounded())
                    }
                }
            }
        }
        if !outlined.isEmpty {
            for panel in 0..<panels {
                drawOutline(of: outlined, grid: grid, cell: cell, left: panel * (side + gap), width: width, pixels: &pixels)
            }
        }
        return RGBImage(width: width, height: image.height, pixels: pixels)
    }

    /// A 1-pixel magenta line along every patch edge between a patch of `patches` and one outside.
    static func drawOutline(
        of patches: Set<Int>, grid: TokenGrid, cell: (width: Int, height: Int), left: Int, width: Int, pixels: inout [UInt8]
    ) {
        func inside(_ row: Int, _ column: Int) -> Bool {
            (0..<grid.rows).contains(row) && (0..<grid.columns).contains(column) && patches.contains(row * grid.columns + column)
        }
        func paint(_ x: Int, _ y: Int) {
            let offset = (y * width + left + x) * 3
            pixels[offset] = 255
            pixels[offset + 1] = 0
            pixels[offset + 2] = 255
        }
        for index in patches where index >= 0 && index < grid.rows * grid.columns {
            let row = index / grid.columns, column = index % grid.columns
            let x0 = column * cell.width, y0 = row * cell.height, x1 = x0 + cell.width - 1, y1 = y0 + cell.height - 1
            for step in 0..<cell.width {
                if !inside(row - 1, column) { paint(x0 + step, y0) }
                if !inside(row + 1, column) { paint(x0 + step, y1) }
            }
            for step in 0..<cell.height {
                if !inside(row, column - 1) { paint(x0, y0 + step) }
                if !inside(row, column + 1) { paint(x1, y0 + step) }
            }
        }
    }

    /// `image` enlarged `factor` times, each pixel a factor × factor block (for small pictures).
    public static func enlarged(_ image: RGBImage, factor: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: image.width * factor * image.height * factor * 3)  // (height·f, width·f, 3)
        for y in 0..<(image.height * factor) {
            for x in 0..<(image.width * factor) {
                let source = ((y / factor) * image.width + x / factor) * 3, destination = (y * image.width * factor + x) * 3
                for channel in 0..<3 { pixels[destination + channel] = image.pixels[source + channel] }
            }
        }
        return RGBImage(width: image.width * factor, height: image.height * factor, pixels: pixels)
    }

    /// Rows stacked top to bottom (one per image), padded to the widest.
    public static func stack(_ rows: [RGBImage]) -> RGBImage {
        let width = rows.map(\.width).max() ?? 0
        let height = rows.reduce(0) { $0 + $1.height } + max(rows.count - 1, 0) * gap
        var pixels = [UInt8](repeating: 255, count: width * height * 3)  // (height, width, 3)
        var top = 0
        for row in rows {
            for y in 0..<row.height {
                let source = y * row.width * 3, destination = ((top + y) * width) * 3
                pixels.replaceSubrange(destination..<(destination + row.width * 3), with: row.pixels[source..<(source + row.width * 3)])
            }
            top += row.height + gap
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }
}
