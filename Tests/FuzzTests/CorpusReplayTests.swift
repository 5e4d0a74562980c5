import Foundation
import FuzzHarness
import Testing

/// Every committed seed of every fuzz target (Tests/Fuzz/corpus/<target>/), replayed through the
/// same functions `make fuzz` runs under libFuzzer: valid fixtures and malformed cases alike must
/// come back (with or without an error) instead of crashing. Inputs that crashed the fuzzer are
/// added to the corpus as well as tested in their parser's own suite.
struct CorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus")

    @Test(arguments: FuzzTarget.allCases)
    func seedsRunWithoutCrashing(target: FuzzTarget) throws {
        let directory = Self.corpus.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(files.count >= 5, "the \(target.rawValue) corpus needs valid and malformed seeds")
        var accepted = 0
        for file in files {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            if FuzzHarness.run(target, data) == nil { accepted += 1 }
        }
        // The valid fixtures pass, so the harness reaches past the first check.
        #expect(accepted >= 1, "no \(target.rawValue) seed was accepted")
        #expect(accepted < files.count, "no \(target.rawValue) seed is malformed")
    }
}
