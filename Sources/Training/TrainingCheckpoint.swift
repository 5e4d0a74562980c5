import Foundation
import SafeTensors
import TensorCore

/// Problems with a training checkpoint directory, named.
public enum TrainingCheckpointError: Error, Equatable, CustomStringConvertible {
    case notATrainingCheckpoint(directory: String)
    case inconsistent(directory: String, reason: String)
    case wouldOverwriteInput(directory: String)

    public var description: String {
        switch self {
        case let .notATrainingCheckpoint(directory):
            return "\(directory): no trainer_state.safetensors (only a directory written by `pdrop train` can be resumed)"
        case let .inconsistent(directory, reason):
            return "\(directory): the trainer state does not fit this run: \(reason)"
        case let .wouldOverwriteInput(directory):
            return "\(directory): --output is the input checkpoint itself; choose another directory so the original weights are kept"
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
/// input's tensor names, fp32; config.json; tokenizer and processor files) that `pdrop generate`
/// and transformers load, plus trainer_state.safetensors for `--resume`.
public enum TrainingCheckpoint {
    public static let stateFile = "trainer_state.safetensors"
    public static let weightsFile = "model.safetensors"
    /// A checkpoint's tokenizer and chat-template files.
    public static let tokenizerFiles = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "added_tokens.json",
        "chat_template.json", "chat_template.jinja",
    ]
    /// Files copied from the input checkpoint when present.
    public static let companionFiles = tokenizerFiles + ["preprocessor_config.json", "processor_config.json", "generation_config.json"]

    /// Saves `parameters`, the optimizer's moments and the trainer state into `directory`
    /// (created if needed). Each file is written to a temporary name and renamed, and the state
    /// goes last, so an interrupted save leaves the previous checkpoint readable.
    public static func save(
        to directory: URL, source: URL, parameters: [String: Tensor], optimizer: AdamW, state: TrainerState
    ) throws {
        let manager = FileManager.default
        try manager.createDirectory(at: directory, withIntermediateDirectories: true)
        let sameDirectory = source.standardizedFileURL.path == directory.standardizedFileURL.path
        if !sameDirectory {
            for name in companionFiles {
                let from = source.appendingPathComponent(name)
                guard manager.fileExists(atPath: from.path) else { continue }
                let to = directory.appendingPathComponent(name)
                try? manager.removeItem(at: to)
                try manager.copyItem(at: from, to: to)
            }
            try writeConfiguration(from: source.appendingPathComponent("config.json"), to: directory.appendingPathComponent("config.json"))
        }
        let weights = parameters.map { SafeTensorsWriter.Item(name: $0.key, tensor: $0.value) }
        try SafeTensorsWriter.write(
            weights, metadata: ["format": "pt", "step": String(state.step)], to: directory.appendingPathComponent(weightsFile))
        var moments: [SafeTensorsWriter.Item] = []
        for name in optimizer.names {
            moments.append(SafeTensorsWriter.Item(name: "exp_avg." + name, tensor: optimizer.firstMoments[name]!))
            moments.append(SafeTensorsWriter.Item(name: "exp_avg_sq." + name, tensor: optimizer.secondMoments[name]!))
        }
        let metadata = [
            "step": String(state.step), "epoch": String(state.stream.epoch), "sample": String(state.stream.index),
            "settings": state.settings, "optimizer_step": String(optimizer.step),
        ]
        try SafeTensorsWriter.write(moments, metadata: metadata, to: directory.appendingPathComponent(stateFile))
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

    /// Reads trainer_state.safetensors of `directory` into `optimizer` and returns the state.
    public static func restore(from directory: URL, optimizer: AdamW) throws -> TrainerState {
        let url = directory.appendingPathComponent(stateFile)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TrainingCheckpointError.notATrainingCheckpoint(directory: directory.path)
        }
        let file = try SafeTensorsFile(path: url.path)
        let metadata = file.metadata
        guard let step = metadata["step"].flatMap(Int.init), let epoch = metadata["epoch"].flatMap(Int.init),
              let sample = metadata["sample"].flatMap(Int.init), let optimizerStep = metadata["optimizer_step"].flatMap(Int.init)
        else {
            throw TrainingCheckpointError.inconsistent(directory: directory.path, reason: "trainer_state metadata lacks step/epoch/sample")
        }
        var first: [String: Tensor] = [:], second: [String: Tensor] = [:]
        for name in optimizer.names {
            guard file.entries["exp_avg." + name] != nil, file.entries["exp_avg_sq." + name] != nil else {
                throw TrainingCheckpointError.inconsistent(
                    directory: directory.path, reason: "no optimizer moments for \(name) (was it trained with other --train parts?)")
            }
            first[name] = try file.floatTensor("exp_avg." + name)
            second[name] = try file.floatTensor("exp_avg_sq." + name)
        }
        optimizer.restore(step: optimizerStep, firstMoments: first, secondMoments: second)
        return TrainerState(step: step, stream: SampleStreamPosition(epoch: epoch, index: sample), settings: metadata["settings"] ?? "")
    }
}
