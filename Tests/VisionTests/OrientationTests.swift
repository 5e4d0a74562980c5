import Testing
@testable import Vision

@Suite struct OrientationTests {
    /// A 3×2 image whose pixel values spell out their position: value = 10 × row + column.
    private let labelled = RGBImage(width: 3, height: 2, pixels: [0, 1, 2, 10, 11, 12].flatMap { [UInt8($0), 0, 0] })

    private func rows(_ image: RGBImage) -> [[UInt8]] {
        (0..<image.height).map { y in (0..<image.width).map { x in image[x, y].red } }
    }

    @Test func transpositionsMatchPIL() {
        // Expected grids from PIL: Image.fromarray(grid).transpose(method), grid = [[0, 1, 2], [10, 11, 12]].
        #expect(rows(labelled.applyingOrientation(.upright)) == [[0, 1, 2], [10, 11, 12]])
        #expect(rows(labelled.applyingOrientation(.mirroredHorizontally)) == [[2, 1, 0], [12, 11, 10]])
        #expect(rows(labelled.applyingOrientation(.rotated180)) == [[12, 11, 10], [2, 1, 0]])
        #expect(rows(labelled.applyingOrientation(.mirroredVertically)) == [[10, 11, 12], [0, 1, 2]])
        #expect(rows(labelled.applyingOrientation(.transposed)) == [[0, 10], [1, 11], [2, 12]])
        #expect(rows(labelled.applyingOrientation(.needsClockwiseRotation)) == [[10, 0], [11, 1], [12, 2]])
        #expect(rows(labelled.applyingOrientation(.transversed)) == [[12, 2], [11, 1], [10, 0]])
        #expect(rows(labelled.applyingOrientation(.needsCounterClockwiseRotation)) == [[2, 12], [1, 11], [0, 10]])
    }

    /// A TIFF block with one IFD0 entry.
    private func tiff(bigEndian: Bool, tag: UInt16 = 0x0112, type: UInt16 = 3, count: UInt32 = 1, value: UInt32) -> [UInt8] {
        func u16(_ value: UInt16) -> [UInt8] {
            bigEndian ? [UInt8(value >> 8), UInt8(value & 0xFF)] : [UInt8(value & 0xFF), UInt8(value >> 8)]
        }
        func u32(_ value: UInt32) -> [UInt8] {
            bigEndian ? u16(UInt16(value >> 16)) + u16(UInt16(value & 0xFFFF)) : u16(UInt16(value & 0xFFFF)) + u16(UInt16(value >> 16))
        }
        let valueField: [UInt8]
        switch type {
        case 3: valueField = u16(UInt16(value)) + [0, 0]
        case 1: valueField = [UInt8(value), 0, 0, 0]
        default: valueField = u32(value)
        }
        return (bigEndian ? Array("MM".utf8) : Array("II".utf8)) + u16(42) + u32(8)
            + u16(1) + u16(tag) + u16(type) + u32(count) + valueField + u32(0)
    }

    @Test func exifTagIsReadInBothByteOrdersAndIntegerTypes() {
        for bigEndian in [false, true] {
            for orientation in 1...8 {
                let block = tiff(bigEndian: bigEndian, value: UInt32(orientation))
                #expect(OrientationMetadata.orientationTag(inExif: block) == .present(ExifOrientation(rawValue: orientation)))
                #expect(OrientationMetadata.orientationTag(inExif: Array("Exif\0\0".utf8) + block)
                        == .present(ExifOrientation(rawValue: orientation)))
            }
            #expect(OrientationMetadata.orientationTag(inExif: tiff(bigEndian: bigEndian, type: 4, value: 6)) == .present(.needsClockwiseRotation))
            #expect(OrientationMetadata.orientationTag(inExif: tiff(bigEndian: bigEndian, type: 1, value: 3)) == .present(.rotated180))
        }
    }

    @Test func oddExifIsHarmless() {
        // Out of range or a tuple: the tag is there (so XMP is not consulted) but nothing is transposed.
        #expect(OrientationMetadata.orientationTag(inExif: tiff(bigEndian: false, value: 9)) == .present(nil))
        #expect(OrientationMetadata.orientationTag(inExif: tiff(bigEndian: false, count: 2, value: 6)) == .present(nil))
        #expect(OrientationMetadata.orientation(exif: tiff(bigEndian: false, value: 0), xmp: Array(#"tiff:Orientation="6""#.utf8)) == .upright)
        // Another tag only, a rational, garbage, truncation: no orientation at all.
        #expect(OrientationMetadata.orientationTag(inExif: tiff(bigEndian: false, tag: 0x010F, value: 6)) == .absent)
        #expect(OrientationMetadata.orientationTag(inExif: tiff(bigEndian: false, type: 5, value: 6)) == .absent)
        #expect(OrientationMetadata.orientationTag(inExif: Array("not a tiff at all".utf8)) == .absent)
        #expect(OrientationMetadata.orientationTag(inExif: []) == .absent)
        // Cut anywhere before the end of the entry: no tag. The next-directory offset after it is not needed.
        let whole = tiff(bigEndian: true, value: 6)
        let entryEnd = 8 + 2 + 12
        for length in 0...whole.count {
            let expected: OrientationMetadata.ExifTag = length < entryEnd ? .absent : .present(.needsClockwiseRotation)
            #expect(OrientationMetadata.orientationTag(inExif: Array(whole.prefix(length))) == expected, "prefix \(length)")
        }
        var pointingOutside = tiff(bigEndian: false, value: 6)
        pointingOutside[4] = 0xF0
        #expect(OrientationMetadata.orientationTag(inExif: pointingOutside) == .absent)
    }

    @Test func xmpPatternsMatchPillowsRegularExpression() {
        func xmp(_ text: String) -> ExifOrientation? { OrientationMetadata.orientation(inXMP: Array(text.utf8)) }
        #expect(xmp(#"<rdf:Description tiff:Orientation="6"/>"#) == .needsClockwiseRotation)
        #expect(xmp("<tiff:Orientation>8</tiff:Orientation>") == .needsCounterClockwiseRotation)
        #expect(xmp(#"tiff:Orientation='6' tiff:Orientation="3""#) == .rotated180)  // the first full match wins
        #expect(xmp(#"tiff:Orientation="9""#) == nil)
        #expect(xmp(#"tiff:Orientation=""#) == nil)
        #expect(xmp("tiff:Orientation") == nil)
        #expect(xmp("") == nil)
    }

    @Test func rawProfileTextDecodesLikePillow() {
        let block = tiff(bigEndian: false, value: 5)
        let hex = block.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
        let text = "\nexif\n      \(block.count)\n" + String(hex.prefix(10)) + "\n" + String(hex.dropFirst(10)) + "\n"
        #expect(OrientationMetadata.exifFromRawProfileText(Array(text.utf8)) == block)
        #expect(OrientationMetadata.exifFromRawProfileText(Array("\nexif\n".utf8)) == nil)
        #expect(OrientationMetadata.exifFromRawProfileText(Array("\nexif\n  2\nabc\n".utf8)) == nil)
        #expect(OrientationMetadata.exifFromRawProfileText(Array("\nexif\n  2\nzz\n".utf8)) == nil)
    }
}
