import Foundation
import Testing
@testable import Vision

/// Damaged input must come back as an `ImageError`, never as a crash, a hang or an unbounded allocation.
@Suite struct RobustnessTests {
    /// A small deterministic generator (64-bit LCG), so failures reproduce.
    private struct Generator {
        var state: UInt64

        mutating func next(below bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    private static let samples = [
        "images/face_rgb8.png", "images/face_rgba16_interlaced.png", "images/face_palette4.png",
        "images/chelsea_orientation_6.jpg", "images/coffee_progressive.jpg", "images/chelsea_cmyk.jpg",
    ]

    @Test("Every truncation is refused or decoded", arguments: samples)
    func everyTruncationIsHandled(_ file: String) throws {
        let bytes = [UInt8](try Data(contentsOf: Fixtures.url(file)))
        var refused = 0
        for length in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 150)) {
            do {
                _ = try ImageDecoder.decode(Array(bytes.prefix(length)), file: "\(file)[..<\(length)]")
            } catch {
                refused += 1
                #expect(error.file == "\(file)[..<\(length)]")
            }
        }
        #expect(refused > 0)
    }

    @Test("Random byte damage is refused or decoded", arguments: samples)
    func randomDamageIsHandled(_ file: String) throws {
        let original = [UInt8](try Data(contentsOf: Fixtures.url(file)))
        var generator = Generator(state: UInt64(original.count))
        for round in 0..<60 {
            var damaged = original
            for _ in 0..<(1 + generator.next(below: 8)) {
                damaged[generator.next(below: damaged.count)] = UInt8(generator.next(below: 256))
            }
            do {
                let image = try ImageDecoder.decode(damaged, file: "\(file) round \(round)")
                #expect(image.pixels.count == image.width * image.height * 3)
            } catch {
                #expect(error.file == "\(file) round \(round)")
            }
        }
    }
}
