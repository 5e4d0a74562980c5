import Foundation
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// What a killed, terminated or mistyped `pdrop train` leaves behind: the checkpoint is one unit
/// (SIGKILL at any moment leaves a directory that loads and resumes exactly), SIGTERM saves like
/// Ctrl-C, a trainer state that does not fit its weights is refused before any memory is touched,
/// and `--output` never destroys what the run did not write. Text-only conversations keep each
/// step as cheap as a save, so random kills land in saves as often as in steps.
@Suite struct TrainCheckpointSafetyTests {
    let model = Fixtures.url("tiny-llava").path

    /// Six text-only conversations in `directory`.
    func writeTextData(in directory: URL) throws -> String {
        let records = (0..<6).map { index in
            """
            {"id": "text-\(index)", "conversations": [{"from": "human", "value": "Count to \(index + 2)."}, \
            {"from": "gpt", "value": "\((1...(index + 2)).map(String.init).joined(separator: ", "))."}]}
            """
        }
        let url = directory.appendingPathComponent("text.json")
        try Data("[\(records.joined(separator: ",\n"))]".utf8).write(to: url)
        return url.path
    }

    func arguments(data: String, output: URL, steps: Int, resume: Bool = false) -> [String] {
        ["train"] + (resume ? ["--resume", output.path] : ["--model", model])
            + ["--data", data, "--steps", String(steps), "--batch-size", "2", "--lr", "1e-3", "--warmup-steps", "2",
               "--train", "all", "--save-every", "1", "--output", output.path]
    }

    func logSteps(_ directory: URL) -> [(step: Int, loss: Double)] {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("training_log.jsonl"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = object["step"] as? Int, let loss = object["loss"] as? Double else { return nil }
            return (step, loss)
        }
    }

    /// The checkpoint files a kill may have left: each whole, and weights and optimizer state of one step.
    func expectWholeCheckpoint(_ directory: URL, kill: Int) throws {
        let state = try SafeTensorsFile(path: directory.appendingPathComponent("trainer_state.safetensors").path)
        let weights = try SafeTensorsFile(path: directory.appendingPathComponent("model.safetensors").path)
        #expect(weights.metadata["step"] == state.metadata["step"], "kill \(kill): weights and state of different steps")
        for name in ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
            let data = try Data(contentsOf: directory.appendingPathComponent(name))
            #expect((try? JSONSerialization.jsonObject(with: data)) != nil, "kill \(kill): \(name) is not whole JSON")
        }
    }

    @Test func killedAtRandomMomentsTheRunAlwaysLoadsAndEndsExactlyAsAnUninterruptedOne() throws {
        let directory = try makeTemporaryDirectory("train-kill")
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = try writeTextData(in: directory)
        let steps = 40
        let straight = directory.appendingPathComponent("straight"), killed = directory.appendingPathComponent("killed")
        let clock = ContinuousClock()
        let start = clock.now
        let full = try runPDrop(arguments(data: data, output: straight, steps: steps))
        #expect(full.status == 0, "\(full.stderr)")
        let runSeconds = (clock.now - start).inSeconds

        var generator = SystemRandomNumberGenerator()
        // After 50 kills the run is left to finish, so a slow machine cannot exhaust the attempts.
        var kills = 0, killsInSaves = 0, refusals = 0, attempts = 0, finished = false
        while !finished && attempts < 60 {
            attempts += 1
            let hasCheckpoint = FileManager.default.fileExists(atPath: killed.appendingPathComponent("trainer_state.safetensors").path)
            if !hasCheckpoint && FileManager.default.fileExists(atPath: killed.path) {
                // Killed before its first save completed: nothing to resume, and --resume says so.
                let refused = try runPDrop(arguments(data: data, output: killed, steps: steps, resume: true))
                #expect(refused.status != 0 && refused.stderr.contains("trainer_state.safetensors"), "\(refused.stderr)")
                refusals += 1
            }
            let process = try ChildProcess(pdropExecutable, arguments(data: data, output: killed, steps: steps, resume: hasCheckpoint))
            // Anywhere in the run: loading, a step, or (as often as not) a save.
            usleep(UInt32(Double.random(in: 0.02...0.12, using: &generator) * runSeconds * 1e6))
            if !process.hasExited && kills < 50 {
                kill(process.identifier, SIGKILL)
                kills += 1
            }
            let status = process.waitForExit()
            let halfSaved = ["saving", "previous"].contains { role in
                FileManager.default.fileExists(atPath: directory.appendingPathComponent(".killed.pdrop-\(role)").path)
            }
            if halfSaved { killsInSaves += 1 }
            finished = status == 0
            if FileManager.default.fileExists(atPath: killed.appendingPathComponent("trainer_state.safetensors").path) {
                try expectWholeCheckpoint(killed, kill: kills)
            }
        }
        #expect(finished, "the run did not finish within 60 attempts")
        #expect(kills >= 5, "only \(kills) kills landed")
        print("train kill test: \(kills) SIGKILLs (\(killsInSaves) in the middle of a save), \(refusals) refused resumes, straight run \(runSeconds) s")

        let straightLog = logSteps(straight), killedLog = logSteps(killed)
        #expect(killedLog.map(\.step) == Array(1...steps), "the log repeats or misses steps: \(killedLog.map(\.step))")
        #expect(killedLog.map(\.loss) == straightLog.map(\.loss))
        let a = try SafeTensorsFile(path: straight.appendingPathComponent("model.safetensors").path)
        let b = try SafeTensorsFile(path: killed.appendingPathComponent("model.safetensors").path)
        #expect(a.tensorNames == b.tensorNames)
        for name in a.tensorNames {
            #expect(maxAbsoluteDifference(try a.floatTensor(name), try b.floatTensor(name)) == 0, "\(name)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("pdrop-") }
        #expect(leftovers.isEmpty, "temporaries left: \(leftovers)")
        let inside = try FileManager.default.contentsOfDirectory(atPath: killed.path).filter { $0.hasPrefix(".") }
        #expect(inside.isEmpty, "hidden files left in the checkpoint: \(inside)")
    }

    @Test func sigtermSavesAndExitsLikeCtrlC() throws {
        let directory = try makeTemporaryDirectory("train-term")
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = try writeTextData(in: directory)
        let output = directory.appendingPathComponent("run")
        var arguments = arguments(data: data, output: output, steps: 400)
        arguments.replaceSubrange(arguments.firstIndex(of: "--save-every")!...(arguments.firstIndex(of: "--save-every")! + 1), with: [])
        let process = try ChildProcess(pdropExecutable, arguments)
        let deadline = Date().addingTimeInterval(120)
        while logSteps(output).isEmpty && Date() < deadline && !process.hasExited { usleep(20_000) }
        kill(process.identifier, SIGTERM)
        #expect(process.waitForExit() == 128 + SIGTERM)
        let state = try SafeTensorsFile(path: output.appendingPathComponent("trainer_state.safetensors").path)
        let logged = logSteps(output).map(\.step)
        #expect(state.metadata["step"] == String(logged.last ?? -1) && logged == Array(1...logged.count), "\(logged)")
    }

    /// A one-step checkpoint of the text data in `directory/run`, and the data path.
    func oneStepCheckpoint(in directory: URL) throws -> (output: URL, data: String) {
        let data = try writeTextData(in: directory)
        let output = directory.appendingPathComponent("run")
        let run = try runPDrop(arguments(data: data, output: output, steps: 3) + ["--stop-at-step", "1"])
        #expect(run.status == 0, "\(run.stderr)")
        return (output, data)
    }

    /// Rewrites the checkpoint's trainer state with `change` applied to its tensors and metadata.
    func editState(_ output: URL, _ change: (inout [SafeTensorsWriter.Item], inout [String: String]) throws -> Void) throws {
        let url = output.appendingPathComponent("trainer_state.safetensors")
        let file = try SafeTensorsFile(path: url.path)
        var items = try file.tensorNames.map { SafeTensorsWriter.Item(name: $0, tensor: try file.floatTensor($0)) }
        var metadata = file.metadata
        try change(&items, &metadata)
        try SafeTensorsWriter.write(items, metadata: metadata, to: url)
    }

    @Test func aTrainerStateThatDoesNotFitItsWeightsIsRefusedWithItsReason() throws {
        let directory = try makeTemporaryDirectory("train-state")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (output, data) = try oneStepCheckpoint(in: directory)
        let original = try Data(contentsOf: output.appendingPathComponent("trainer_state.safetensors"))
        let moment = "exp_avg_sq.multi_modal_projector.linear_1.bias"
        let cases: [(String, (inout [SafeTensorsWriter.Item], inout [String: String]) throws -> Void)] = [
            ("has shape [16], its parameter [32]", { items, _ in
                let index = items.firstIndex { $0.name == moment }!
                items[index] = SafeTensorsWriter.Item(name: moment, tensor: Tensor(shape: [16]))
            }),
            ("has shape", { items, _ in  // the right count, transposed
                let index = items.firstIndex { $0.name.hasPrefix("exp_avg.") && $0.shape.count == 2 && $0.shape[0] != $0.shape[1] }!
                let name = items[index].name, shape = items[index].shape
                items[index] = SafeTensorsWriter.Item(name: name, tensor: Tensor(shape: [shape[1], shape[0]]))
            }),
            ("'step' is '-5'", { _, metadata in metadata["step"] = "-5" }),
            ("not saved together", { _, metadata in metadata["step"] = "2"; metadata["optimizer_step"] = "2" }),
            ("no optimizer moment", { items, _ in items.removeAll { $0.name == moment } }),
        ]
        for (expected, change) in cases {
            try original.write(to: output.appendingPathComponent("trainer_state.safetensors"))
            try editState(output, change)
            let resumed = try runPDrop(arguments(data: data, output: output, steps: 3, resume: true))
            #expect(resumed.status == 1 && resumed.stderr.contains(expected), "\(expected): \(resumed.status) \(resumed.stderr)")
        }
    }

    @Test func theOutputNeverDestroysWhatTheRunDidNotWrite() throws {
        let directory = try makeTemporaryDirectory("train-output")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (output, data) = try oneStepCheckpoint(in: directory)

        // A link to the input checkpoint is the input checkpoint.
        let copy = directory.appendingPathComponent("model-copy")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: model), to: copy)
        let link = directory.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: copy)
        var arguments = arguments(data: data, output: link, steps: 1)
        arguments[arguments.firstIndex(of: model)!] = copy.path
        let linked = try runPDrop(arguments)
        #expect(linked.status != 0 && linked.stderr.contains("original weights"), "\(linked.stderr)")
        #expect(FileManager.default.fileExists(atPath: copy.appendingPathComponent("tokenizer.json").path))

        let empty = try runPDrop(["train", "--model", model, "--data", data, "--steps", "1", "--output", ""])
        #expect(empty.status != 0 && empty.stderr.contains("--output"), "\(empty.stderr)")

        let notes = directory.appendingPathComponent("notes")
        try FileManager.default.createDirectory(at: notes, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: notes.appendingPathComponent("todo.txt"))
        let foreign = try runPDrop(self.arguments(data: data, output: notes, steps: 1))
        #expect(foreign.status != 0 && foreign.stderr.contains("not a checkpoint of `pdrop train`"), "\(foreign.stderr)")
        #expect(FileManager.default.fileExists(atPath: notes.appendingPathComponent("todo.txt").path))

        // A run stopped before its first save leaves only its log; a new run may start there.
        let unsaved = directory.appendingPathComponent("unsaved")
        try FileManager.default.createDirectory(at: unsaved, withIntermediateDirectories: true)
        try Data("{\"step\": 1, \"loss\": 9.0}\n".utf8).write(to: unsaved.appendingPathComponent("training_log.jsonl"))
        let restarted = try runPDrop(self.arguments(data: data, output: unsaved, steps: 1))
        #expect(restarted.status == 0, "\(restarted.stderr)")
        #expect(logSteps(unsaved).map(\.step) == [1] && logSteps(unsaved).first?.loss != 9.0, "\(logSteps(unsaved))")

        // A file the user put in a checkpoint survives the saves that replace the checkpoint.
        try Data("mine".utf8).write(to: output.appendingPathComponent("eval-notes.txt"))
        let resumed = try runPDrop(self.arguments(data: data, output: output, steps: 3, resume: true))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect((try? String(contentsOf: output.appendingPathComponent("eval-notes.txt"), encoding: .utf8)) == "mine")
    }
}
