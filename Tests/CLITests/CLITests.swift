import Foundation
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// The built `pdrop` binary (test bundles and products share one build folder).
let pdropExecutable = Bundle.main.bundleURL.appendingPathComponent("pdrop")

/// Runs the built `pdrop` binary, as a user would.
func runPDrop(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let output = Pipe(), errors = Pipe()
    let child = try ChildProcess(pdropExecutable, arguments, standardOutput: output, standardError: errors)
    // stderr read on its own thread: a child that fills one pipe while we wait on the other would block.
    nonisolated(unsafe) var errData = Data()
    let errorsRead = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        errData = errors.fileHandleForReading.readDataToEndOfFile()
        errorsRead.signal()
    }
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    errorsRead.wait()
    child.waitForExit()
    return (child.process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
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

/// `pdrop generate` and `pdrop logits` on the tiny LLaVA checkpoint with a real photograph,
/// against transformers' and the PyramidDrop reference's outputs.
@Suite struct LlavaCommandTests {
    let model = Fixtures.url("tiny-llava").path
    let image = Fixtures.url("images/chelsea.jpg").path
    let question = "What is shown in this image?"

    func json(_ arguments: [String]) throws -> [String: Any] {
        let run = try runPDrop(arguments)
        #expect(run.status == 0, "\(run.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    }

    func reference(_ file: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.url("tiny-llava/\(file)").path)
    }

    @Test func logitsMatchTransformersWithoutReduction() throws {
        let object = try json(["logits", "--model", model, "--image", image, "--prompt", question, "--reduction", "none"])
        let expected = try reference("reference-image.safetensors")
        #expect(object["inputIds"] as? [Int] == (try expected.integers("input_ids")))
        #expect(object["imageTokens"] as? Int == 576)
        let logits = try #require(object["lastLogits"] as? [Double]).map(Float.init)
        let reference = try expected.floatTensor("logits.last")
        #expect(logits.count == reference.count)
        #expect(maxAbsoluteDifference(Tensor(shape: [1, logits.count], values: logits), reference) < 1e-4)
    }

    @Test func rawPromptIsUsedAsGiven() throws {
        let raw = try json(["logits", "--model", model, "--image", image, "--raw-prompt",
                            "USER: <image>\nWhat is shown in this image? ASSISTANT:", "--reduction", "none"])
        #expect(raw["inputIds"] as? [Int] == (try reference("reference-image.safetensors").integers("input_ids")))
        let different = try json(["logits", "--model", model, "--image", image, "--raw-prompt", "<image>", "--reduction", "none"])
        #expect((different["inputIds"] as? [Int])?.count == 577)  // BOS + 576 image tokens
    }

    @Test(arguments: [
        ("pdrop.reindex", ["--reduction", "pdrop", "--layers", "2,4,6", "--ratios", "0.5,0.25,0.125"]),
        ("pdrop.reindex", ["--lambda", "0.5", "--stages", "4"]),
        ("pdrop.preserve", ["--layers", "2,4,6", "--ratios", "0.5,0.25,0.125", "--positions", "preserve"]),
        ("fastv.preserve", ["--reduction", "fastv", "--fastv-layer", "2", "--fastv-ratio", "0.5"]),
        ("fastv.reindex", ["--reduction", "fastv", "--positions", "reindex"]),
    ])
    func generateWithReductionMatchesTheReference(_ name: String, _ flags: [String]) throws {
        let object = try json(["generate", "--model", model, "--image", image, "--prompt", question, "--max-new-tokens", "16",
                               "--ignore-eos", "--json"] + flags)
        let expected = try reference("reference-pdrop.safetensors")
        #expect(object["tokens"] as? [Int] == (try expected.integers("\(name).greedy_tokens")))
        let kept = try #require(object["keptImageTokens"] as? [[Int]])
        let drops = name.hasPrefix("fastv") ? 1 : 3
        #expect(kept.count == drops)
        for drop in 0..<drops { #expect(kept[drop] == (try expected.integers("\(name).kept.\(drop)"))) }
        #expect(object["promptTokens"] as? Int == 595 && object["imageTokens"] as? Int == 576)
        #expect(object["prefillSeconds"] is Double && object["decodeTokensPerSecond"] is Double)
        let flops = try #require(object["flops"] as? [String: Any])
        #expect((flops["paperImageTeraFLOPs"] as? Double ?? 1) < (flops["paperImageTeraFLOPsWithoutReduction"] as? Double ?? 0))
        #expect(flops["exactTotal"] is Double)
    }

    /// A budget of average image tokens per layer gives a schedule that meets it (within one token).
    @Test(arguments: [("pdrop", 150.0), ("fastv", 150.0), ("pdrop", 80.0)])
    func budgetTokensAreMet(_ reduction: String, _ budget: Double) throws {
        let object = try json(["generate", "--model", model, "--image", image, "--prompt", question, "--max-new-tokens", "1",
                               "--json", "--reduction", reduction, "--budget-tokens", String(budget)])
        let perLayer = try #require(object["tokensPerLayer"] as? [Int])
        let textTokens = 595 - 576
        let average = Double(perLayer.reduce(0) { $0 + $1 - textTokens }) / Double(perLayer.count)
        #expect(abs(average - budget) <= 1, "\(reduction) \(object["reduction"] ?? ""): average \(average) image tokens per layer")
    }

    @Test func badPromptsAndImagesAreClearErrors() throws {
        let noImage = try runPDrop(["generate", "--model", model, "--image", image, "--raw-prompt", "USER: hi ASSISTANT:"])
        #expect(noImage.status != 0 && noImage.stderr.contains("no <image>"))
        let twoImages = try runPDrop(["generate", "--model", model, "--image", image, "--raw-prompt", "<image><image>"])
        #expect(twoImages.status != 0 && twoImages.stderr.contains("2 <image>"))
        let long = try runPDrop(["logits", "--model", model, "--image", image, "--prompt", String(repeating: "more ", count: 4000)])
        #expect(long.status != 0 && long.stderr.contains("context of 4096"))
        let truncated = Fixtures.url("vision/images/bad/truncated_half.jpg").path
        let badImage = try runPDrop(["generate", "--model", model, "--image", truncated, "--prompt", question])
        #expect(badImage.status != 0 && badImage.stderr.contains("truncated_half.jpg"))
        let missing = try runPDrop(["generate", "--model", model, "--image", "/nonexistent.png", "--prompt", question])
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent.png"))
        let both = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", question, "--raw-prompt", "<image>"])
        #expect(both.status != 0 && both.stderr.contains("exactly one of"))
        let impossibleBudget = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", question, "--budget-tokens", "60"])
        #expect(impossibleBudget.status != 0 && impossibleBudget.stderr.contains("cannot be met"))
        let badSchedule = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", question, "--layers", "2,9", "--ratios", "0.5,0.25"])
        #expect(badSchedule.status != 0 && badSchedule.stderr.contains("outside 1...7"))
    }

    @Test func saveKeptWritesAPicture() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("kept.png").path
        let run = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", question, "--max-new-tokens", "2", "--save-kept", path])
        #expect(run.status == 0, "\(run.stderr)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]))
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

    /// Foundation's file errors reach the user in words, after the file's name.
    @Test func fileErrorsAreInWords() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("no-such-data")
        let result = try runPDrop(["data", "vocabulary", "--tokenizer", Fixtures.url("tiny-llava").path, "--data", missing.path,
                                   "--output", directory.appendingPathComponent("out").path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(missing.path)/train.json: No such file or directory"), "\(result.stderr)")
        #expect(!result.stderr.contains("Domain") && !result.stderr.contains("Code="), "\(result.stderr)")
    }

    @Test func invalidSchedulesAreClearErrors() throws {
        let mismatched = try runPDrop(["flops", "--layers", "8,16", "--ratios", "0.5"])
        #expect(mismatched.status != 0 && mismatched.stderr.contains("2 layers"))
        let increasing = try runPDrop(["flops", "--layers", "8,16", "--ratios", "0.25,0.5"])
        #expect(increasing.status != 0 && increasing.stderr.contains("increase"))
        let both = try runPDrop(["flops", "--layers", "8", "--ratios", "0.5", "--lambda", "0.5"])
        #expect(both.status != 0 && both.stderr.contains("not both"))
        // argument-parser reads "-2,4,6" as an option: the message says how to write it.
        let negative = try runPDrop(["flops", "--layers", "-2,4,6", "--ratios", "0.5,0.25,0.125"])
        #expect(negative.status != 0 && negative.stderr.contains("negative values need '=': --layers=-2,4,6"), "\(negative.stderr)")
        let withEquals = try runPDrop(["flops", "--layers=-2,4,6", "--ratios", "0.5,0.25,0.125"])
        #expect(withEquals.status != 0 && !withEquals.stderr.contains("Missing value"), "\(withEquals.stderr)")
        let badNumber = try runPDrop(["flops", "--layers", "8,x", "--ratios", "0.5,0.25"])
        #expect(badNumber.status != 0 && badNumber.stderr.contains("item 2"))
        let unknownPreset = try runPDrop(["flops", "--preset", "gpt-9"])
        #expect(unknownPreset.status != 0 && unknownPreset.stderr.contains("gpt-9"))
    }
}

/// `pdrop generate` on the tiny LLaVA-NeXT checkpoint: the anyres block, --max-tiles, and what it refuses.
@Suite struct LlavaNextCommandTests {
    let model = Fixtures.url("tiny-llava-next").path
    let image = Fixtures.url("anyres/chelsea-451x300.png").path

    @Test func generateGivesTheReferenceTokensAndHonoursMaxTiles() throws {
        let reference = try SafeTensorsFile(path: Fixtures.url("tiny-llava-next/reference-next.safetensors").path)
        let run = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", "What is shown in this image?",
                                "--max-new-tokens", "16", "--ignore-eos", "--json", "--reduction", "pdrop", "--layers", "2,4,6",
                                "--ratios", "0.5,0.25,0.125"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        #expect(object?["tokens"] as? [Int] == (try reference.integers("chelsea-451x300.pdrop.greedy_tokens")))
        #expect(object?["imageTokens"] as? Int == 70)
        #expect((object?["keptImageTokens"] as? [[Int]])?.first == (try reference.integers("chelsea-451x300.pdrop.kept.0")))

        let limited = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", "What?", "--max-new-tokens", "1",
                                    "--max-tiles", "2", "--json"])
        let limitedObject = try JSONSerialization.jsonObject(with: Data(limited.stdout.utf8)) as? [String: Any]
        #expect((limitedObject?["imageTokens"] as? Int ?? 0) < 70, "\(limited.stderr)")
        let kept = try runPDrop(["generate", "--model", model, "--image", image, "--prompt", "What?", "--save-kept", "/tmp/never.png"])
        #expect(kept.status != 0 && kept.stderr.contains("LLaVA-NeXT"))
        let onePointFive = try runPDrop(["generate", "--model", Fixtures.url("tiny-llava").path, "--image", image, "--prompt", "What?",
                                         "--max-tiles", "4"])
        #expect(onePointFive.status != 0 && onePointFive.stderr.contains("--max-tiles"))
    }
}
