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
        // tools/bench_pytorch.py's checkpoints: computed in fp32, no comparison of answers' prefills;
        // the bf16 one computed in bf16, its prompt as long as llama.cpp's: its prefills set against
        // llama.cpp's (616 / 140 = 4.40 s).
        let report = Fixtures.repositoryRoot.appendingPathComponent("docs/performance.json")
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [[String: Any]])
        var fp32Entry = try #require(entries.first { $0["pytorch"] != nil })
        var reductions = try #require(fp32Entry["results"] as? [[String: Any]])
        try #require(reductions.count == 3)
        reductions[0]["prefillSeconds"] = 8.8
        reductions[2]["prefillSeconds"] = 2.2
        fp32Entry.merge(["preset": "bench-1b", "compute": "fp32", "weights": "float32", "imageTokens": 576, "textTokens": 40,
                         "results": reductions]) { $1 }
        var bf16Entry = fp32Entry
        bf16Entry.merge(["preset": "bench-1b-bf16", "compute": "bf16", "weights": "bfloat16"]) { $1 }
        let madeReport = directory.appendingPathComponent("performance.json")
        try JSONSerialization.data(withJSONObject: [fp32Entry]).write(to: madeReport)
        let fp32Only = try runPDrop(["bench", "--render", madeReport.path, "--llamacpp", results.path])
        #expect(fp32Only.status == 0 && !fp32Only.stdout.contains("A LLaVA answer's prefill"), "\(fp32Only.stdout)\(fp32Only.stderr)")
        try JSONSerialization.data(withJSONObject: [fp32Entry, bf16Entry]).write(to: madeReport)
        let answer = try runPDrop(["bench", "--render", madeReport.path, "--llamacpp", results.path])
        #expect(answer.status == 0, "\(answer.stderr)")
        #expect(answer.stdout.contains("| llama.cpp, no reduction (best run above) | 4.40 | 1.00× |"), "\(answer.stdout)")
        #expect(answer.stdout.contains("| ours, no reduction | 8.80 | 0.50× |"), "\(answer.stdout)")
        #expect(answer.stdout.contains("| ours, PyramidDrop (\(reductions[2]["reduction"] ?? "")) | 2.20 | 2.00× |"), "\(answer.stdout)")

        try Data("{\"rounds\": 3}".utf8).write(to: results)
        let bad = try runPDrop(["bench", "--preset", "small", "--llamacpp", results.path])
        #expect(bad.status != 0 && bad.stderr.contains("results.json"), "\(bad.stderr)")
        let unpaired = try runPDrop(["bench", "--model", "a", "--model", "b", "--pytorch", "a/pytorch.json"])
        #expect(unpaired.status != 0 && unpaired.stderr.contains("give one --pytorch per --model (got 1 for 2)"), "\(unpaired.stderr)")
    }
}
