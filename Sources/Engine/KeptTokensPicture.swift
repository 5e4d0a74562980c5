import Foundation
import Vision

/// The paper's Figure 5: the image as the vision tower sees it, once before any drop and once
/// after each drop, with the patches whose tokens were dropped dimmed.
public enum KeptTokensPicture {
    /// Pixels of the gap between panels and rows.
    static let gap = 6
    /// Dropped patches keep this fraction of their brightness.
    static let dimming: Float = 0.2

    /// One row of panels for one image: `image` (side × side, resized and cropped like the
    /// model's input), `keptPerDrop[s]` the surviving patch indices after drop s
    /// (row-major over a patchesPerSide × patchesPerSide grid).
    public static func render(image: RGBImage, patchesPerSide: Int, keptPerDrop: [[Int]]) -> RGBImage {
        let side = image.width, patch = side / max(patchesPerSide, 1)
        let panels = keptPerDrop.count + 1
        let width = panels * side + (panels - 1) * gap
        var pixels = [UInt8](repeating: 255, count: width * image.height * 3)  // (height, width, 3), white gaps
        for panel in 0..<panels {
            var kept = [Bool](repeating: true, count: patchesPerSide * patchesPerSide)  // (patches,)
            if panel > 0 {
                kept = [Bool](repeating: false, count: kept.count)
                for index in keptPerDrop[panel - 1] where index < kept.count { kept[index] = true }
            }
            let left = panel * (side + gap)
            for y in 0..<image.height {
                for x in 0..<side {
                    let patchIndex = min(y / patch, patchesPerSide - 1) * patchesPerSide + min(x / patch, patchesPerSide - 1)
                    let factor: Float = kept[patchIndex] ? 1 : dimming
                    for channel in 0..<3 {
                        let value = Float(image.pixels[(y * image.width + x) * 3 + channel]) * factor
                        pixels[(y * width + left + x) * 3 + channel] = UInt8(value.rounded())
                    }
                }
            }
        }
        return RGBImage(width: width, height: image.height, pixels: pixels)
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
