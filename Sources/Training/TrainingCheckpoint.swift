import Foundation
import SafeTensors
import TensorCore

/// Problems with a training checkpoint directory, named.
public enum TrainingCheckpointError: Error, Equatable, CustomStringConvertible {
    case notATrainingCheckpoint(directory: String)
    case inconsistent(directory: String, reason: String)
    case wouldOverwriteInput(directory: String)
    case unusableOutput(path: String, reason: String)

    public var description: String {
        switch self {
        case let .notATrainingCheckpoint(directory):
            return "\(directory): no trainer_state.safetensors (only a directory written by `pdrop train` can be resumed)"
        case let .inconsistent(directory, reason):
            return "\(directory): the trainer state does not fit this run: \(reason)"
        case let .wouldOverwriteInput(directory):
            return "\(directory): --output is the input checkpoint itself; choose another directory so the original weights are kept"
        case let .unusableOutput(path, reason):
            return "--output '\(path)': \(reason)"
        }
    }
}

/// What a checkpoint directory holds besides the weights: the optimizer and the data position.
public struct TrainerState: Equatable {
    public var step: Int
    public var stream: SampleStreamPosition
    /// The run's settings as text (JSON), compared on resume.
    public var settings: String
}

/// Writes and reads `pdrop train` checkpoints: a llava-hf directory (model.safetensors in the
/// input's tensor names, fp32; config.json; tokenizer and processor files; training_log.jsonl)
/// that `pdrop generate` and transformers load, plus trainer_state.safetensors for `--resume`.
///
/// A checkpoint is one unit: each save writes a complete new directory beside the output
/// (`.NAME.pdrop-saving`), then swaps it into place by two renames (the old one goes to
/// `.NAME.pdrop-previous` and is removed). A run killed at any moment leaves either the old or
/// the new checkpoint whole; `recoverInterruptedSave` (run before every load and save) finishes or
/// discards what a kill left half done. The weights, the trainer state and the log carry one step.
public enum TrainingCheckpoint {
    public static let stateFile = "trainer_state.safetensors"
    public static let weightsFile = "model.safetensors"
    public static let logFile = "training_log.jsonl"
    /// A checkpoint's tokenizer and chat-template files.
    public static let tokenizerFiles = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "added_tokens.json",
        "chat_template.json", "chat_template.jinja",
    ]
    /// Files copied from the input checkpoint when present.
    public static let companionFiles = tokenizerFiles + ["preprocessor_config.json", "processor_config.json", "generation_config.json"]

    /// The hidden sibling of `directory` a save writes into, and the one the replaced checkpoint moves to.
    static func sibling(of directory: URL, _ role: String) -> URL {
        directory.deletingLastPathComponent().appendingPathComponent(".\(directory.lastPathComponent).pdrop-\(role)")
    }

    /// Finishes or discards a save that a kill interrupted at `directory`: a complete new
    /// checkpoint (its trainer state is written last) whose swap did not happen is moved into
    /// place; a partial one is removed; the replaced checkpoint is removed once the new one is in place.
    public static func recoverInterruptedSave(at directory: URL) throws {
        let manager = FileManager.default
        let saving = sibling(of: directory, "saving"), previous = sibling(of: directory, "previous")
        if manager.fileExists(atPath: saving.path) {
            let complete = manager.fileExists(atPath: saving.appendingPathComponent(stateFile).path)
            if complete && !manager.fileExists(atPath: directory.path) {
                try manager.moveItem(at: saving, to: directory)
            } else {
                try manager.removeItem(at: saving)
            }
        }
        if manager.fileExists(atPath: previous.path) {
            if manager.fileExists(atPath: directory.path) {
                try manager.removeItem(at: previous)
            } else {
                try manager.moveItem(at: previous, to: directory)
            }
        }
    }

    /// The directory `--output` names, checked before anything is loaded or written: not empty,
    /// symlinks resolved (so a link to the input is the input), not the input unless resuming in
    /// place, and either new, empty, a checkpoint of `pdrop train` (a save replaces it) or what a
    /// run stopped before its first save leaves (its log alone, which the new run starts afresh).
    public static func outputDirectory(_ path: String, input: URL, resumingInPlaceAllowed: Bool) throws -> URL {
        if path.trimmingCharacters(in: .whitespaces).isEmpty {
            throw TrainingCheckpointError.unusableOutput(path: path, reason: "is empty; name a directory for the checkpoints")
        }
        let directory = URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL
        let resolvedInput = input.resolvingSymlinksInPath().standardizedFileURL
        if directory.path == resolvedInput.path && !resumingInPlaceAllowed {
            throw TrainingCheckpointError.wouldOverwriteInput(directory: path)
        }
        try recoverInterruptedSave(at: directory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) else { return directory }
        if !isDirectory.boolValue {
            throw TrainingCheckpointError.unusableOutput(path: path, reason: "is a file, not a directory")
        }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        if !entries.isEmpty && !entries.contains(stateFile) && entries != [logFile] {
            throw TrainingCheckpointError.unusableOutput(
                path: path, reason: "holds files but no \(stateFile), so it is not a checkpoint of `pdrop train`; choose a new or empty directory")
        }
        return directory
    }

    /// Saves `parameters`, the optimizer's moments, the trainer state and the log up to this
    /// step as one complete checkpoint at `directory`, replacing the one there (see the type's comment).
    /// Files in `directory` that a save does not write (the user's) move into the new checkpoint.
    public static func save(
        to directory: URL, source: URL, parameters: [String: Tensor], optimizer: AdamW, state: TrainerState
    ) throws {
        let manager = FileManager.default
        try recoverInterruptedSave(at: directory)
        let saving = sibling(of: directory, "saving")
        try manager.createDirectory(at: saving, withIntermediateDirectories: true)
        for name in companionFiles {
            let from = source.appendingPathComponent(name)
            guard manager.fileExists(atPath: from.path) else { continue }
            try manager.copyItem(at: from, to: saving.appendingPathComponent(name))
        }
        try writeConfiguration(from: source.appendingPathComponent("config.json"), to: saving.appendingPathComponent("config.json"))
        try writeLog(from: directory.appendingPathComponent(logFile), to: saving.appendingPathComponent(logFile), throughStep: state.step)
        let weights = parameters.map { SafeTensorsWriter.Item(name: $0.key, tensor: $0.value) }
        try SafeTensorsWriter.write(
            weights, metadata: ["format": "pt", "step": String(state.step)], to: saving.appendingPathComponent(weightsFile))
        var moments: [SafeTensorsWriter.Item] = []
        for name in optimizer.names {
            moments.append(SafeTensorsWriter.Item(name: "exp_avg." + name, tensor: optimizer.firstMoments[name]!))
            moments.append(SafeTensorsWriter.Item(name: "exp_avg_sq." + name, tensor: optimizer.secondMoments[name]!))
        }
        let metadata = [
            "step": String(state.step), "epoch": String(state.stream.epoch), "sample": String(state.stream.index),
            "settings": state.settings, "optimizer_step": String(optimizer.step),
        ]
        // Last: its presence marks the new checkpoint complete.
        try SafeTensorsWriter.write(moments, metadata: metadata, to: saving.appendingPathComponent(stateFile))

        guard manager.fileExists(atPath: directory.path) else {
            try manager.moveItem(at: saving, to: directory)
            return
        }
        let written = Set(try manager.contentsOfDirectory(atPath: saving.path))
        for entry in try manager.contentsOfDirectory(atPath: directory.path) where !written.contains(entry) && !isWriterTemporary(entry) {
            try manager.moveItem(at: directory.appendingPathComponent(entry), to: saving.appendingPathComponent(entry))
        }
        let previous = sibling(of: directory, "previous")
        try manager.moveItem(at: directory, to: previous)
        try manager.moveItem(at: saving, to: directory)
        try manager.removeItem(at: previous)
    }

    /// Temporaries Foundation's atomic writes leave when killed (none survive a completed save).
    static func isWriterTemporary(_ name: String) -> Bool {
        name.hasPrefix(".dat.nosync") || name.hasPrefix(".tmp")
    }

    /// Copies the lines of the training log at `source` whose step is at most `step` (none when it
    /// is missing) to `destination`: a resumed run continues a log without the steps it redoes.
    public static func writeLog(from source: URL, to destination: URL, throughStep step: Int) throws {
        guard let data = FileManager.default.contents(atPath: source.path) else {
            try Data().write(to: destination, options: .atomic)
            return
        }
        var kept = Data()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let lineStep = object["step"] as? Int, lineStep <= step else { continue }
            kept.append(Data(line))
            kept.append(UInt8(ascii: "\n"))
        }
        try kept.write(to: destination, options: .atomic)
    }

    /// config.json of the input with its dtype set to float32, as the weights are now stored.
    static func writeConfiguration(from source: URL, to destination: URL) throws {
        let data = try Data(contentsOf: source)
        guard var root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TrainingCheckpointError.inconsistent(directory: source.deletingLastPathComponent().path, reason: "config.json is not an object")
        }
        func retype(_ object: inout [String: Any]) {
            for key in ["torch_dtype", "dtype"] where object[key] != nil { object[key] = "float32" }
        }
        retype(&root)
        for key in ["text_config", "vision_config"] {
            if var nested = root[key] as? [String: Any] { retype(&nested); root[key] = nested }
        }
        if root["torch_dtype"] == nil && root["dtype"] == nil { root["torch_dtype"] = "float32" }
        let output = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        try output.write(to: destination, options: .atomic)
    }

    /// Reads trainer_state.safetensors of `directory` into `optimizer` and returns the state, after
    /// checking every value it uses: the counters are in range, the weights beside it are of the
    /// same step, and each moment has its parameter's exact shape.
    public static func restore(from directory: URL, optimizer: AdamW) throws -> TrainerState {
        let url = directory.appendingPathComponent(stateFile)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TrainingCheckpointError.notATrainingCheckpoint(directory: directory.path)
        }
        func inconsistent(_ reason: String) -> TrainingCheckpointError { .inconsistent(directory: directory.path, reason: reason) }
        let file = try SafeTensorsFile(path: url.path)
        let metadata = file.metadata
        func counter(_ key: String) throws -> Int {
            guard let text = metadata[key] else { throw inconsistent("\(stateFile) metadata has no '\(key)'") }
            guard let value = Int(text), value >= 0 else {
                throw inconsistent("\(stateFile) metadata '\(key)' is '\(text.prefix(40))', not a whole number ≥ 0")
            }
            return value
        }
        let step = try counter("step"), epoch = try counter("epoch"), sample = try counter("sample")
        let optimizerStep = try counter("optimizer_step")
        if optimizerStep != step { throw inconsistent("\(stateFile) says step \(step) but optimizer step \(optimizerStep)") }
        let weights = try SafeTensorsFile(path: directory.appendingPathComponent(weightsFile).path)
        if weights.metadata["step"] != String(step) {
            throw inconsistent(
                "\(weightsFile) is of step \(weights.metadata["step"].map { "'\($0.prefix(40))'" } ?? "(none)") but \(stateFile) of step \(step); "
                    + "the two were not saved together")
        }
        var first: [String: Tensor] = [:], second: [String: Tensor] = [:]
        for name in optimizer.names {
            let shape = optimizer.firstMoments[name]!.shape
            for prefix in ["exp_avg.", "exp_avg_sq."] {
                guard let entry = file.entries[prefix + name] else {
                    throw inconsistent("no optimizer moment \(prefix + name) (was it trained with other --train parts?)")
                }
                if entry.shape != shape {
                    throw inconsistent("optimizer moment \(prefix + name) has shape \(entry.shape), its parameter \(shape)")
                }
            }
            first[name] = try file.floatTensor("exp_avg." + name)
            second[name] = try file.floatTensor("exp_avg_sq." + name)
        }
        optimizer.restore(step: optimizerStep, firstMoments: first, secondMoments: second)
        return TrainerState(step: step, stream: SampleStreamPosition(epoch: epoch, index: sample), settings: metadata["settings"] ?? "")
    }
}
