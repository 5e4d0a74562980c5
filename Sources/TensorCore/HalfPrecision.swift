/// Conversion of checkpoint storage types (bf16, fp16) to fp32.
public enum HalfPrecision {
    /// bf16 is the top half of an fp32: widening is a shift, exact for every value.
    @inline(__always)
    public static func floatFromBFloat16(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// fp32 → bf16 with round-to-nearest-even, as PyTorch does (NaN stays NaN).
    @inline(__always)
    public static func bfloat16FromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
        let roundingBias = ((bits >> 16) & 1) + 0x7FFF
        return UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
    }

    @inline(__always)
    public static func floatFromFloat16(_ bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }

    /// destination(count) = fp32 of source(count) bf16 values; `source` needs no alignment.
    public static func convertBFloat16(
        _ source: UnsafeRawPointer, to destination: UnsafeMutablePointer<Float>, count: Int
    ) {
        var index = 0
        while index + 8 <= count {
            let halves = source.loadUnaligned(fromByteOffset: index * 2, as: SIMD8<UInt16>.self)
            let widened = SIMD8<UInt32>(truncatingIfNeeded: halves) &<< 16
            UnsafeMutableRawPointer(destination + index).storeBytes(of: widened, as: SIMD8<UInt32>.self)
            index += 8
        }
        while index < count {
            destination[index] = floatFromBFloat16(source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
            index += 1
        }
    }

    /// destination(count) = fp32 of source(count) IEEE half values; `source` needs no alignment.
    public static func convertFloat16(
        _ source: UnsafeRawPointer, to destination: UnsafeMutablePointer<Float>, count: Int
    ) {
        var index = 0
        while index + 8 <= count {
            let halves = source.loadUnaligned(fromByteOffset: index * 2, as: SIMD8<Float16>.self)
            let widened = SIMD8<Float>(halves)
            UnsafeMutableRawPointer(destination + index).storeBytes(of: widened, as: SIMD8<Float>.self)
            index += 8
        }
        while index < count {
            destination[index] = floatFromFloat16(source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
            index += 1
        }
    }
}
