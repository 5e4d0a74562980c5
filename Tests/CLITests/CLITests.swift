import Foundation
import Testing
import TestSupport

/// Runs the built `pdrop` binary, as a user would.
func runPDrop(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    // Test bundles and products share one build folder.
    let buildDirectory = Bundle.main.bundleURL
    process.executableURL = buildDirectory.appendingPathComponent("pdrop")
    process.arguments = arguments
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    let errData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

@Suite struct CLITests {
    @Test func generateJSONGivesTheReferenceTokens() throws {
        let model = Fixtures.url("tiny-llama").path
        let run = try runPDrop(["generate", "--model", model, "--prompt-ids", "1,17,300,42,42,7,511,128,5,99,250,3,64",
                                "--max-new-tokens", "16", "--ignore-eos", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        #expect(object?["tokens"] as? [Int] == [41, 357, 397, 234, 333, 47, 22, 238, 404, 248, 2, 305, 72, 344, 30, 58])
        #expect(object?["promptTokens"] as? Int == 13)
        #expect(object?["prefillSeconds"] is Double)
    }

    @Test func generateStopsAtEndOfSequenceByDefault() throws {
        let model = Fixtures.url("tiny-llama").path
        let run = try runPDrop(["generate", "--model", model, "--prompt-ids", "1,17,300,42,42,7,511,128,5,99,250,3,64", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        // Token 2 (</s>) is the 11th greedy token: generation ends there, as transformers' generate does.
        #expect(object?["tokens"] as? [Int] == [41, 357, 397, 234, 333, 47, 22, 238, 404, 248, 2])
    }

    @Test func badInputGivesAClearErrorAndNonZeroExit() throws {
        let missing = try runPDrop(["generate", "--model", "/nonexistent", "--prompt-ids", "1,2"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("/nonexistent/config.json"))
        let badIds = try runPDrop(["generate", "--model", Fixtures.url("tiny-llama").path, "--prompt-ids", "1,x"])
        #expect(badIds.status != 0)
        #expect(badIds.stderr.contains("item 2"))
        let outOfVocabulary = try runPDrop(["generate", "--model", Fixtures.url("tiny-llama").path, "--prompt-ids", "1,9999"])
        #expect(outOfVocabulary.status != 0)
        #expect(outOfVocabulary.stderr.contains("9999"))
    }
}

@Suite struct FLOPsCommandTests {
    func paperFigures(_ arguments: [String]) throws -> (vanilla: Double, reduced: Double) {
        let run = try runPDrop(["flops", "--json"] + arguments)
        #expect(run.status == 0, "\(run.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        let flops = try #require(object?["flops"] as? [String: Any])
        return (try #require(flops["paperImageTeraFLOPsWithoutReduction"] as? Double), try #require(flops["paperImageTeraFLOPs"] as? Double))
    }

    /// The paper's four figures to 3 significant digits: 3.82 → 1.78 (LLaVA-1.5-7B), 20.8 → 9.46 (LLaVA-NeXT-7B).
    @Test func reproducesThePapersFigures() throws {
        let llava = try paperFigures(["--preset", "llava-1.5-7b"])
        #expect(String(format: "%.3g", llava.vanilla) == "3.82" && String(format: "%.3g", llava.reduced) == "1.78")
        let next = try paperFigures(["--preset", "llava-next-7b"])
        #expect(String(format: "%.3g", next.vanilla) == "20.8" && String(format: "%.3g", next.reduced) == "9.46")
        let explicit = try paperFigures(["--preset", "llava-1.5-7b", "--layers", "8,16,24", "--ratios", "0.5,0.25,0.125"])
        #expect(String(format: "%.3g", explicit.reduced) == "1.78")
        let lambda = try paperFigures(["--preset", "llava-next-7b", "--lambda", "0.5", "--stages", "4"])
        #expect(String(format: "%.3g", lambda.reduced) == "9.46")
    }

    @Test func invalidSchedulesAreClearErrors() throws {
        let mismatched = try runPDrop(["flops", "--layers", "8,16", "--ratios", "0.5"])
        #expect(mismatched.status != 0 && mismatched.stderr.contains("2 layers"))
        let increasing = try runPDrop(["flops", "--layers", "8,16", "--ratios", "0.25,0.5"])
        #expect(increasing.status != 0 && increasing.stderr.contains("increase"))
        let both = try runPDrop(["flops", "--layers", "8", "--ratios", "0.5", "--lambda", "0.5"])
        #expect(both.status != 0 && both.stderr.contains("not both"))
        let badNumber = try runPDrop(["flops", "--layers", "8,x", "--ratios", "0.5,0.25"])
        #expect(badNumber.status != 0 && badNumber.stderr.contains("item 2"))
        let unknownPreset = try runPDrop(["flops", "--preset", "gpt-9"])
        #expect(unknownPreset.status != 0 && unknownPreset.stderr.contains("gpt-9"))
    }
}
