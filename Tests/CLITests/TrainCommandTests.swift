import Foundation
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// `pdrop train` as a user runs it: checkpoints, Ctrl-C, resume, bad data and bad flags.
@Suite struct TrainCommandTests {
    let model = Fixtures.url("tiny-llava").path
    let data = Fixtures.url("training/data.json").path
    let images = Fixtures.url("training/images").path

    func trainArguments(output: URL, steps: Int = 4) -> [String] {
        ["train", "--model", model, "--data", data, "--images", images, "--steps", String(steps), "--batch-size", "2",
         "--lr", "1e-3", "--warmup-steps", "1", "--layers", "2,4,6", "--ratios", "0.5,0.25,0.125", "--train", "all",
         "--output", output.path]
    }

    func logLines(_ directory: URL) -> [[String: Any]] {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("training_log.jsonl"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// An interrupted run saves, exits 130, and `--resume` ends exactly where an uninterrupted run does.
    @Test func interruptThenResumeEqualsAnUninterruptedRun() throws {
        let straight = try makeTemporaryDirectory("train-straight"), resumed = try makeTemporaryDirectory("train-resumed")
        defer { try? FileManager.default.removeItem(at: straight); try? FileManager.default.removeItem(at: resumed) }
        let full = try runPDrop(trainArguments(output: straight))
        #expect(full.status == 0, "\(full.stderr)")
        #expect(full.stderr.contains("saved step 4"))

        // Interrupt after the first step has been logged.
        let process = try ChildProcess(pdropExecutable, trainArguments(output: resumed))
        let deadline = Date().addingTimeInterval(120)
        while logLines(resumed).isEmpty && Date() < deadline && !process.hasExited { usleep(20_000) }
        kill(process.identifier, SIGINT)
        #expect(process.waitForExit() == 130)
        let interruptedSteps = logLines(resumed).count
        #expect(interruptedSteps >= 1 && interruptedSteps < 4, "interrupted after \(interruptedSteps) steps")
        let state = try SafeTensorsFile(path: resumed.appendingPathComponent("trainer_state.safetensors").path)
        #expect(state.metadata["step"] == String(interruptedSteps))

        var arguments = trainArguments(output: resumed)
        let modelIndex = arguments.firstIndex(of: "--model")!
        arguments.replaceSubrange(modelIndex...(modelIndex + 1), with: ["--resume", resumed.path])
        let rest = try runPDrop(arguments)
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(rest.stderr.contains("resumed at step \(interruptedSteps)"))

        let losses = { (directory: URL) in self.logLines(directory).map { $0["loss"] as? Double ?? .nan } }
        #expect(losses(straight) == losses(resumed), "\(losses(straight)) vs \(losses(resumed))")
        let a = try SafeTensorsFile(path: straight.appendingPathComponent("model.safetensors").path)
        let b = try SafeTensorsFile(path: resumed.appendingPathComponent("model.safetensors").path)
        #expect(a.tensorNames == b.tensorNames)
        for name in a.tensorNames {
            #expect(maxAbsoluteDifference(try a.floatTensor(name), try b.floatTensor(name)) == 0, "\(name)")
        }
        // Resuming a finished run does nothing and says so.
        let again = try runPDrop(arguments)
        #expect(again.status == 0 && again.stderr.contains("nothing to do"))
    }

    @Test func badDataAndBadFlagsAreNamedErrors() throws {
        let directory = try makeTemporaryDirectory("train-bad")
        defer { try? FileManager.default.removeItem(at: directory) }
        let badData = directory.appendingPathComponent("bad.json")
        try Data("""
            [{"id": "fine", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
             {"id": "no-file", "image": "missing.jpg", "conversations": [{"from": "human", "value": "<image>\\nWhat?"}, {"from": "gpt", "value": "A cat."}]},
             {"id": "empty", "conversations": []}]
            """.utf8).write(to: badData)
        var arguments = trainArguments(output: directory.appendingPathComponent("out"), steps: 1)
        arguments[arguments.firstIndex(of: data)!] = badData.path
        let refused = try runPDrop(arguments + ["--bad-records", "refuse"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("no-file") && refused.stderr.contains("empty"), "\(refused.stderr)")
        let skipped = try runPDrop(arguments)
        #expect(skipped.status == 0, "\(skipped.stderr)")
        #expect(skipped.stderr.contains("skipped record 1 (id no-file)") && skipped.stderr.contains("1 samples of 3 records"), "\(skipped.stderr)")

        let overwrite = try runPDrop(["train", "--model", model, "--data", data, "--images", images, "--steps", "1", "--output", model])
        #expect(overwrite.status != 0 && overwrite.stderr.contains("original weights"))
        let fastV = try runPDrop(["train", "--model", model, "--data", data, "--steps", "1", "--output", directory.path, "--reduction", "fastv"])
        #expect(fastV.status != 0 && fastV.stderr.contains("fastv"))
        let badPart = try runPDrop(["train", "--model", model, "--data", data, "--images", images, "--steps", "1", "--output", directory.path,
                                    "--train", "projector,eyes"])
        #expect(badPart.status != 0 && badPart.stderr.contains("eyes"))
        let frozenTowerRate = try runPDrop(["train", "--model", model, "--data", data, "--images", images, "--steps", "1", "--output", directory.path,
                                            "--vision-lr", "1e-4"])
        #expect(frozenTowerRate.status != 0 && frozenTowerRate.stderr.contains("--vision-lr") && frozenTowerRate.stderr.contains("frozen"),
                "\(frozenTowerRate.stderr)")
        let notTraining = try runPDrop(["train", "--resume", model, "--data", data, "--images", images, "--steps", "1", "--output", directory.path])
        #expect(notTraining.status != 0 && notTraining.stderr.contains("trainer_state.safetensors"))
        let qwen = try runPDrop(["train", "--model", Fixtures.url("tiny-qwen2-vl").path, "--data", data, "--images", images, "--steps", "1",
                                 "--output", directory.appendingPathComponent("qwen").path])
        #expect(qwen.status != 0 && qwen.stderr.contains("LLaVA-family") && qwen.stderr.contains("Qwen2-VL"), "\(qwen.stderr)")
    }

    /// The training benchmark's report (structure and token accounting; timings are not asserted).
    @Test func benchTrainReportsNoneAndPyramidDrop() throws {
        let directory = try makeTemporaryDirectory("bench-train")
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("train.json")
        let run = try runPDrop(["bench", "--train", "--preset", "small", "--steps", "1", "--text-tokens", "64", "--answer-tokens", "16",
                                "--json-output", json.path])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("time saved"))
        let reports = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [[String: Any]]
        let results = reports?.first?["results"] as? [[String: Any]] ?? []
        #expect(results.count == 2)
        // small: 8 layers, 576 image + 64 text tokens; PDrop [2,4,6] keeps 288, 144, 72 image tokens.
        #expect(results.first?["layerTokens"] as? Int == 8 * 640)
        #expect(results.last?["layerTokens"] as? Int == 2 * 640 + 2 * (288 + 64) + 2 * (144 + 64) + 2 * (72 + 64))
        #expect((results.last?["exactForwardRatio"] as? Double ?? 0) > 1)
        let tooBig = try runPDrop(["bench", "--train", "--preset", "llava-1.5-7b"])
        #expect(tooBig.status != 0 && tooBig.stderr.contains("fp32 training needs about"), "\(tooBig.stderr)")
    }
}
