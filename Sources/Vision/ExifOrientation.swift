/// The EXIF Orientation tag (0x0112). Each case is named for what the stored pixels need; the comment gives
/// the `PIL.Image.Transpose` method `PIL.ImageOps.exif_transpose` applies for it.
public enum ExifOrientation: Int, Sendable, CaseIterable {
    case upright = 1                        // nothing
    case mirroredHorizontally = 2           // FLIP_LEFT_RIGHT
    case rotated180 = 3                     // ROTATE_180
    case mirroredVertically = 4             // FLIP_TOP_BOTTOM
    case transposed = 5                     // TRANSPOSE
    case needsClockwiseRotation = 6         // ROTATE_270
    case transversed = 7                    // TRANSVERSE
    case needsCounterClockwiseRotation = 8  // ROTATE_90
}

/// Finds the orientation the way Pillow's `Image.getexif()` does: the Orientation tag of IFD0 in the EXIF
/// block, and only when that tag is absent, a `tiff:Orientation` attribute or element in the XMP packet.
/// Values outside 1...8 (and tags PIL would read as a tuple) mean "leave the image alone", as in PIL.
enum OrientationMetadata {
    /// What IFD0 says about orientation.
    enum ExifTag: Equatable {
        case absent
        /// Present; `nil` when its value is not a single integer in 1...8.
        case present(ExifOrientation?)
    }

    static func orientation(exif: [UInt8]?, xmp: [UInt8]?) -> ExifOrientation {
        let tag = exif.map(orientationTag(inExif:)) ?? .absent
        switch tag {
        case .present(let orientation):
            return orientation ?? .upright
        case .absent:
            return xmp.flatMap(orientation(inXMP:)) ?? .upright
        }
    }

    /// Reads IFD0 of an EXIF block (a TIFF structure, optionally behind the "Exif\0\0" APP1 prefix). Damaged
    /// blocks count as having no tag: PIL would refuse the whole image over a broken TIFF header, which is
    /// harsher than a model input needs.
    static func orientationTag(inExif block: [UInt8]) -> ExifTag {
        var tiff = block[...]
        if tiff.starts(with: Array("Exif\0\0".utf8)) {
            tiff = tiff.dropFirst(6)
        }
        let reader = ByteReader(bytes: Array(tiff))
        let littleEndian: Bool
        switch (reader.byte(at: 0), reader.byte(at: 1)) {
        case (UInt8(ascii: "I"), UInt8(ascii: "I")): littleEndian = true
        case (UInt8(ascii: "M"), UInt8(ascii: "M")): littleEndian = false
        default: return .absent
        }
        guard reader.uint16(at: 2, littleEndian: littleEndian) == 42,
              let firstDirectory = reader.uint32(at: 4, littleEndian: littleEndian).map(Int.init),
              let entryCount = reader.uint16(at: firstDirectory, littleEndian: littleEndian)
        else { return .absent }

        let entrySize = 12
        for entry in 0..<Int(entryCount) {
            let start = firstDirectory + 2 + entry * entrySize
            // PIL reads each entry whole; a directory cut short gives no tag rather than half of one.
            guard start + entrySize <= reader.bytes.count, let tag = reader.uint16(at: start, littleEndian: littleEndian),
                  let type = reader.uint16(at: start + 2, littleEndian: littleEndian),
                  let count = reader.uint32(at: start + 4, littleEndian: littleEndian)
            else { return .absent }
            guard tag == 0x0112 else { continue }
            // PIL reads any integer type; a count other than one gives a tuple, which matches no orientation.
            let value: Int?
            switch type {
            case 1, 6: value = reader.byte(at: start + 8).map { type == 6 ? Int(Int8(bitPattern: $0)) : Int($0) }
            case 3, 8:
                value = reader.uint16(at: start + 8, littleEndian: littleEndian)
                    .map { type == 8 ? Int(Int16(bitPattern: $0)) : Int($0) }
            case 4, 9:
                value = reader.uint32(at: start + 8, littleEndian: littleEndian)
                    .map { type == 9 ? Int(Int32(bitPattern: $0)) : Int($0) }
            default: return .absent  // PIL skips tags of types it cannot read
            }
            guard count == 1, let value else { return .present(nil) }
            return .present(ExifOrientation(rawValue: value))
        }
        return .absent
    }

    /// Pillow's `re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)`.
    static func orientation(inXMP packet: [UInt8]) -> ExifOrientation? {
        let name = Array("tiff:Orientation".utf8)
        var start = 0
        while let found = firstIndex(of: name, in: packet, from: start) {
            var cursor = found + name.count
            if cursor + 1 < packet.count, packet[cursor] == UInt8(ascii: "="), packet[cursor + 1] == UInt8(ascii: "\"") {
                cursor += 2
            } else if cursor < packet.count, packet[cursor] == UInt8(ascii: ">") {
                cursor += 1
            } else {
                start = found + 1
                continue
            }
            guard cursor < packet.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(packet[cursor]) else {
                start = found + 1
                continue
            }
            return ExifOrientation(rawValue: Int(packet[cursor] - UInt8(ascii: "0")))
        }
        return nil
    }

    /// The EXIF block of a PNG "Raw profile type exif" text chunk (ImageMagick's layout: a blank line, the
    /// profile name, the length, then hex digits over several lines); Pillow joins the lines after the
    /// third newline and decodes them as hex.
    static func exifFromRawProfileText(_ text: [UInt8]) -> [UInt8]? {
        var newlines = 0
        var index = 0
        while index < text.count, newlines < 3 {
            if text[index] == UInt8(ascii: "\n") {
                newlines += 1
            }
            index += 1
        }
        guard newlines == 3 else { return nil }
        var bytes: [UInt8] = []
        var pendingNibble: UInt8?
        for character in text[index...] where character != UInt8(ascii: "\n") {
            guard let nibble = hexValue(character) else {
                // bytes.fromhex skips ASCII whitespace between pairs and fails on anything else.
                if asciiWhitespace.contains(character), pendingNibble == nil { continue }
                return nil
            }
            if let high = pendingNibble {
                bytes.append(high << 4 | nibble)
                pendingNibble = nil
            } else {
                pendingNibble = nibble
            }
        }
        return pendingNibble == nil ? bytes : nil
    }

    private static let asciiWhitespace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return character - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var candidate = start
        while candidate <= haystack.count - needle.count {
            if haystack[candidate] == needle[0], haystack[candidate..<(candidate + needle.count)].elementsEqual(needle) {
                return candidate
            }
            candidate += 1
        }
        return nil
    }
}

/// Bounds-checked reads from untrusted metadata: every accessor returns nil rather than trapping.
struct ByteReader {
    let bytes: [UInt8]

    func byte(at offset: Int) -> UInt8? {
        offset >= 0 && offset < bytes.count ? bytes[offset] : nil
    }

    func uint16(at offset: Int, littleEndian: Bool) -> UInt16? {
        guard offset >= 0, offset <= bytes.count - 2 else { return nil }
        let first = UInt16(bytes[offset])
        let second = UInt16(bytes[offset + 1])
        return littleEndian ? first | second << 8 : first << 8 | second
    }

    func uint32(at offset: Int, littleEndian: Bool) -> UInt32? {
        guard let first = uint16(at: offset, littleEndian: littleEndian),
              let second = uint16(at: offset + 2, littleEndian: littleEndian)
        else { return nil }
        return littleEndian ? UInt32(first) | UInt32(second) << 16 : UInt32(first) << 16 | UInt32(second)
    }
}
