import Foundation
import Testing
import TestSupport

/// `pdrop bench --machine`: the machine's limits as JSON (figures are not asserted beyond being
/// measured; the features must be the CPU's own).
@Suite struct BenchCommandTests {
    @Test func machineReportsPeaksAndTheCPUsFeatures() throws {
        let directory = try makeTemporaryDirectory("bench-machine")
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("machine.json")
        let run = try runPDrop(["bench", "--machine", "--json-output", json.path])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("fp32 FMA peak"))
        let machine = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any] ?? [:]
        for key in ["fp32PeakGFLOPs", "sgemmGFLOPs", "memoryGBs"] {
            #expect((machine[key] as? Double ?? 0) > 0, "\(key): \(machine[key] ?? "missing")")
        }
        let features = Set(machine["cpuFeatures"] as? [String] ?? [])
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?
            .split(separator: ":", maxSplits: 1).last?.split(separator: " ").map(String.init) ?? [])
        #expect(features.isSubset(of: flags), "features \(features.subtracting(flags)) are not in /proc/cpuinfo")
        let hasBFloat16 = flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512_bf16"])
        #expect((machine["bf16PeakGFLOPs"] != nil) == hasBFloat16)
        #expect((machine["bf16GemmGFLOPs"] != nil) == hasBFloat16)

        let bad = try runPDrop(["bench", "--machine", "--compute", "int4"])
        #expect(bad.status != 0 && bad.stderr.contains("--compute 'int4' is unknown"), "\(bad.stderr)")
    }

    /// tools/llamacpp/bench.sh's results rendered into the report: both engines per format and
    /// our ratio to llama.cpp; a malformed file is refused before anything is measured.
    @Test func llamaCppResultsAreRenderedAsRatios() throws {
        let directory = try makeTemporaryDirectory("bench-llamacpp")
        defer { try? FileManager.default.removeItem(at: directory) }
        let results = directory.appendingPathComponent("results.json")
        try Data("""
            {"rounds": 3, "threads": 2, "promptTokens": 616, "decodeTokens": 64, "best": [
             {"engine": "llama.cpp", "format": "bf16", "prefill": 140.0, "decode": 15.0},
             {"engine": "pdrop", "format": "bf16", "prefill": 126.0, "decode": 12.0},
             {"engine": "llama.cpp", "format": "q8_0", "prefill": 90.0, "decode": 20.0},
             {"engine": "pdrop", "format": "q8_0", "prefill": 99.0, "decode": 16.0}], "runs": [
             {"engine": "pdrop", "format": "bf16", "prefill": 126.0, "decode": 12.0},
             {"engine": "llama.cpp", "format": "bf16", "prefill": 140.0, "decode": 10.0},
             {"engine": "pdrop", "format": "bf16", "prefill": 100.0, "decode": 9.0},
             {"engine": "llama.cpp", "format": "bf16", "prefill": 125.0, "decode": 15.0},
             {"engine": "pdrop", "format": "bf16", "prefill": 120.0, "decode": 11.0},
             {"engine": "llama.cpp", "format": "bf16", "prefill": 100.0, "decode": 11.0}]}
            """.utf8).write(to: results)
        let run = try runPDrop(["bench", "--render", Fixtures.repositoryRoot.appendingPathComponent("docs/performance.json").path,
                                "--llamacpp", results.path])
        #expect(run.status == 0, "\(run.stderr)")
        // Rounds' ratios: prefill 0.90, 0.80, 1.20 (median 0.90); decode 1.20, 0.60, 1.00 (median 1.00).
        #expect(run.stdout.contains("| bf16 | 140.0 | 126.0 | 0.90× | 0.90× | 15.00 | 12.00 | 0.80× | 1.00× |"), "\(run.stdout)")
        #expect(run.stdout.contains("| q8_0 | 90.0 | 99.0 | 1.10× | — | 20.00 | 16.00 | 0.80× | — |"), "\(run.stdout)")
        try Data("{\"rounds\": 3}".utf8).write(to: results)
        let bad = try runPDrop(["bench", "--preset", "small", "--llamacpp", results.path])
        #expect(bad.status != 0 && bad.stderr.contains("results.json"), "\(bad.stderr)")
    }
}
