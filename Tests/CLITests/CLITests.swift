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
