import CKernels

/// Instruction sets this CPU has (and the OS saves the registers of), read once with CPUID.
/// Kernels that need one check it here at run time, so one build runs on AVX-512 and AVX2-only machines.
public struct CPUFeatures: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let avx2 = CPUFeatures(rawValue: UInt32(PD_CPU_AVX2))
    public static let fma = CPUFeatures(rawValue: UInt32(PD_CPU_FMA))
    public static let f16c = CPUFeatures(rawValue: UInt32(PD_CPU_F16C))
    public static let avx512f = CPUFeatures(rawValue: UInt32(PD_CPU_AVX512F))
    public static let avx512bw = CPUFeatures(rawValue: UInt32(PD_CPU_AVX512BW))
    public static let avx512vl = CPUFeatures(rawValue: UInt32(PD_CPU_AVX512VL))
    public static let avx512bf16 = CPUFeatures(rawValue: UInt32(PD_CPU_AVX512_BF16))
    public static let avx512vnni = CPUFeatures(rawValue: UInt32(PD_CPU_AVX512_VNNI))

    /// What the CPU running this process has.
    public static let current = CPUFeatures(rawValue: UInt32(pd_cpu_features()))

    /// Everything the bf16 dot-product kernels need (VDPBF16PS on 512-bit registers, masked loads).
    public static let bfloat16Dot: CPUFeatures = [.avx512f, .avx512bw, .avx512vl, .avx512bf16]

    /// The names as /proc/cpuinfo spells them, in a fixed order.
    public var names: [String] {
        let all: [(CPUFeatures, String)] = [
            (.avx2, "avx2"), (.fma, "fma"), (.f16c, "f16c"), (.avx512f, "avx512f"), (.avx512bw, "avx512bw"),
            (.avx512vl, "avx512vl"), (.avx512vnni, "avx512_vnni"), (.avx512bf16, "avx512_bf16"),
        ]
        return all.filter { contains($0.0) }.map(\.1)
    }
}
