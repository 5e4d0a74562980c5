import Foundation
import TensorCore
import TestSupport
import Testing

/// The choice of OpenBLAS's kernel family from the CPU's flags (OpenBLAS 0.3.21 falls back to its
/// SSE3 "Prescott" kernels on CPUs it does not know, such as this machine's virtual Xeon).
@Suite struct BLASCoreTypeTests {
    let avx512 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16"

    @Test func theFamilyFollowsTheInstructionSets() {
        let flags = BLASCoreType.cpuFlags(cpuinfo: "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: \(avx512)\nbugs\t\t: spectre_v1\n")
        #expect(flags.contains("avx512bw") && flags.contains("fma") && !flags.contains("spectre_v1"))
        #expect(BLASCoreType.better(than: "Prescott", cpuFlags: flags) == "SkylakeX")
        #expect(BLASCoreType.better(than: "Prescott", cpuFlags: ["sse2", "avx", "avx2", "fma"]) == "Haswell")
        #expect(BLASCoreType.better(than: "Prescott", cpuFlags: ["sse2", "avx"]) == nil, "no AVX2: the generic kernels stay")
        // OpenBLAS recognised the CPU: its choice stands.
        #expect(BLASCoreType.better(than: "Zen", cpuFlags: flags) == nil)
        #expect(BLASCoreType.better(than: "SkylakeX", cpuFlags: flags) == nil)
        #expect(BLASCoreType.cpuFlags(cpuinfo: "") == [] && BLASCoreType.cpuFlags(cpuinfo: nil) == [])
    }

    @Test func theUsersSettingWins() {
        #expect(BLASCoreType.coreTypeToRequest(environment: ["OPENBLAS_CORETYPE": "Haswell"]) == nil)
        let both = ["OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_THREAD_TIMEOUT": "28"]
        #expect(OpenBLASEnvironment.toRequest(environment: both) == [:])
        #expect(OpenBLASEnvironment.toRequest(environment: ["OPENBLAS_CORETYPE": "Haswell"]) == ["OPENBLAS_THREAD_TIMEOUT": "20"])
    }

    /// `pdrop` runs with a family that suits this machine (it starts itself again when OpenBLAS chose
    /// a generic one) and with idle OpenBLAS threads that soon sleep.
    @Test func pdropRunsWithKernelsThatSuitThisCPU() throws {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = nil
        environment["OPENBLAS_THREAD_TIMEOUT"] = nil
        let errors = Pipe()
        let process = try ChildProcess(
            Bundle.main.bundleURL.appendingPathComponent("pdrop"),
            ["train", "--model", "/nonexistent", "--data", "/nonexistent", "--steps", "1", "--output", "/nonexistent/out"],
            environment: environment, standardError: errors)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitForExit()
        let line = text.split(separator: "\n").first { $0.contains("OpenBLAS kernels: ") }
        let family = line.map { String($0.split(separator: " ").last!) }
        #expect(family != nil, "no kernel line in: \(text)")
        #expect(line?.contains("OpenBLAS idle threads wait 2^\(OpenBLASEnvironment.threadTimeout) cycles;") == true, "\(text)")
        if let family { #expect(BLASCoreType.better(than: family, cpuFlags: BLASCoreType.cpuFlags()) == nil, "pdrop ran on \(family)") }
    }
}
