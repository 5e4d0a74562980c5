import CBLAS
import Foundation

/// Which of OpenBLAS's kernel families runs the matrix products. Debian's OpenBLAS (0.3.21,
/// DYNAMIC_ARCH) picks one at load from the CPU's family and model numbers; on a CPU it does not
/// know (a virtual machine's "Intel(R) Xeon(R) Processor" with AVX-512, measured here) it falls
/// back to "Prescott", its SSE3 kernels, about 4× slower than the AVX-512 ones on the same
/// cores. The family is chosen from the instruction sets the CPU reports instead, and set with
/// OpenBLAS's own switch, the `OPENBLAS_CORETYPE` environment variable, which it reads at load:
/// `pdrop` starts itself again with it when it is unset and OpenBLAS chose a generic family.
public enum BLASCoreType {
    /// The family OpenBLAS is running ("Prescott", "SkylakeX", "Haswell", "Zen", ...).
    public static var current: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's generic x86-64 families: what it falls back to on a CPU it does not recognise.
    static let genericFamilies: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Katmai", "Coppermine", "Northwood", "Banias", "Atom"]

    /// The family to ask for, given the one OpenBLAS chose and the CPU's flags (/proc/cpuinfo's
    /// names): AVX-512 (F, BW, DQ, VL) → SkylakeX, AVX2 with FMA → Haswell; nil when OpenBLAS's
    /// own choice stands (it recognised the CPU, or the CPU has neither).
    public static func better(than chosen: String, cpuFlags: Set<String>) -> String? {
        guard genericFamilies.contains(chosen) else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The flags of the first processor in /proc/cpuinfo (empty where there is none).
    public static func cpuFlags(cpuinfo: String? = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) -> Set<String> {
        guard let line = cpuinfo?.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// The value for `OPENBLAS_CORETYPE` this process should have been started with, or nil when
    /// it is set already (the user's choice wins) or OpenBLAS's own choice stands.
    public static func coreTypeToRequest(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if environment["OPENBLAS_CORETYPE"] != nil { return nil }
        // /proc/cpuinfo is read only when OpenBLAS fell back to a generic family.
        let chosen = current
        guard genericFamilies.contains(chosen) else { return nil }
        return better(than: chosen, cpuFlags: cpuFlags())
    }
}

/// The environment OpenBLAS should be loaded with. It reads its variables once, when it is loaded
/// (before `main`), so `pdrop` starts itself again, once, when one of these is missing; a value
/// the user set stands.
public enum OpenBLASEnvironment {
    /// OpenBLAS's idle worker threads spin, calling sched_yield, for 2^28 cycles (about 0.1 s)
    /// after each product before they sleep: through the bf16 products and decode steps that
    /// follow an attention's fp32 products they took a core from our own threads (7% of a bf16
    /// prefill's samples in sched_yield; prefill 120–135 → 141–149 tokens/s with the shorter wait,
    /// measured on the TinyLlama shape here). 2^20 cycles (under a millisecond) still covers the
    /// gap between one attention's back-to-back products.
    public static let threadTimeout = "20"

    /// The idle threads' wait OpenBLAS runs with, as it read it at load ("2^20 cycles"; its default
    /// of 2^28 when the variable was unset).
    public static var currentThreadTimeout: String {
        let exponent = openblas_thread_timeout()
        return exponent > 0 ? "2^\(min(max(exponent, 4), 30)) cycles" : "2^28 cycles (OpenBLAS's default)"
    }

    /// The variables to set and their values: `OPENBLAS_THREAD_TIMEOUT` and, where OpenBLAS chose
    /// a generic family, `OPENBLAS_CORETYPE` (`BLASCoreType.coreTypeToRequest`); empty when every
    /// one is set already.
    public static func toRequest(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var settings: [String: String] = [:]
        if environment["OPENBLAS_THREAD_TIMEOUT"] == nil { settings["OPENBLAS_THREAD_TIMEOUT"] = threadTimeout }
        if let coreType = BLASCoreType.coreTypeToRequest(environment: environment) { settings["OPENBLAS_CORETYPE"] = coreType }
        return settings
    }
}
