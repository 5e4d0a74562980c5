import Testing
import TensorCore

@Suite struct HalfPrecisionTests {
    /// All 65536 bf16 patterns: the SIMD path equals the scalar definition (top half of an fp32).
    @Test func bfloat16WideningIsExactForEveryPattern() {
        let patterns = (0...UInt16.max).map { $0 }
        var widened = [Float](repeating: 0, count: patterns.count)
        patterns.withUnsafeBytes { source in
            widened.withUnsafeMutableBufferPointer { HalfPrecision.convertBFloat16(source.baseAddress!, to: $0.baseAddress!, count: patterns.count) }
        }
        for (index, bits) in patterns.enumerated() {
            let expected = Float(bitPattern: UInt32(bits) << 16)
            #expect(widened[index].bitPattern == expected.bitPattern || (widened[index].isNaN && expected.isNaN))
        }
        #expect(HalfPrecision.floatFromBFloat16(0x3F80) == 1.0)
        #expect(HalfPrecision.floatFromBFloat16(0xC000) == -2.0)
    }

    /// All 65536 fp16 patterns: the SIMD path equals Swift's Float16 conversion; known values.
    @Test func float16WideningMatchesFloat16() {
        let patterns = (0...UInt16.max).map { $0 }
        var widened = [Float](repeating: 0, count: patterns.count)
        patterns.withUnsafeBytes { source in
            widened.withUnsafeMutableBufferPointer { HalfPrecision.convertFloat16(source.baseAddress!, to: $0.baseAddress!, count: patterns.count) }
        }
        var mismatches = 0
        for (index, bits) in patterns.enumerated() {
            let expected = Float(Float16(bitPattern: bits))
            if !(widened[index] == expected || (widened[index].isNaN && expected.isNaN)) { mismatches += 1 }
        }
        #expect(mismatches == 0)
        #expect(HalfPrecision.floatFromFloat16(0x3C00) == 1.0)
        #expect(HalfPrecision.floatFromFloat16(0x0001) == Float(5.9604645e-8))  // smallest subnormal
        #expect(HalfPrecision.floatFromFloat16(0x7BFF) == 65504)
    }

    /// fp32 → bf16 rounds to nearest, ties to even, like torch's `.to(torch.bfloat16)`.
    @Test func bfloat16RoundingIsNearestEven() {
        #expect(HalfPrecision.bfloat16FromFloat(1.0) == 0x3F80)
        // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
        #expect(HalfPrecision.bfloat16FromFloat(1 + 1.0 / 256) == 0x3F80)
        // 1 + 3·2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
        #expect(HalfPrecision.bfloat16FromFloat(1 + 3.0 / 256) == 0x3F82)
        #expect(HalfPrecision.bfloat16FromFloat(1 + 1.5 / 256) == 0x3F81)
        #expect(HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat(.nan)).isNaN)
    }
}
