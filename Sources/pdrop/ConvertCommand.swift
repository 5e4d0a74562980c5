import ArgumentParser
import Foundation
import SafeTensors
import Training

/// Rewrites a checkpoint's weights in another floating-point type (e.g. a trained fp32 checkpoint
/// as bf16 to ship), with its config, tokenizer and processor files.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Write a checkpoint's weights as float32, bfloat16 or float16 (round to nearest even), with its other files.",
        discussion: """
            Reads every tensor of --model's safetensors files and writes them, same names and shapes, into \
            OUTPUT/model.safetensors; copies config.json (its dtype entries set to the new type) and the tokenizer \
            and processor files. The optimizer \
            state and training log of a training run are not copied. OUTPUT must be absent or empty.
            """)

    @Option(help: "The checkpoint directory to read.")
    var model: String

    @Option(help: "The directory to write (absent or empty).")
    var output: String

    @Option(help: "Stored type: float32, bfloat16 or float16.")
    var dtype: String = "bfloat16"

    func validate() throws {
        if SafeTensorsDType(rawValue: dtypeName) == nil || !["F32", "BF16", "F16"].contains(dtypeName) {
            throw ValidationError("--dtype must be float32, bfloat16 or float16, not \(dtype)")
        }
    }

    var dtypeName: String { ["float32": "F32", "bfloat16": "BF16", "float16": "F16"][dtype] ?? dtype }

    func run() throws {
        try failing {
            let source = URL(fileURLWithPath: model), destination = URL(fileURLWithPath: output)
            try requireEmpty(destination, option: "--output")
            let checkpoint = try Checkpoint(directory: source)
            let storage = SafeTensorsDType(rawValue: dtypeName)!
            let items = try checkpoint.tensorNames.map { name in
                SafeTensorsWriter.Item(name: name, tensor: try checkpoint.floatTensor(name), dtype: storage)
            }
            try writeCheckpoint(items, from: source, to: destination) { config in
                // The dtype entries name the new type (edited as text so that every other value
                // keeps its spelling: transformers checks float fields' types).
                let dtypeEntry = try NSRegularExpression(pattern: #"("(?:torch_)?dtype"\s*:\s*)"[A-Za-z0-9_]+""#)
                return dtypeEntry.stringByReplacingMatches(
                    in: config, range: NSRange(config.startIndex..., in: config), withTemplate: "$1\"\(dtype)\"")
            }
            let parameters = items.reduce(0) { $0 + $1.shape.reduce(1, *) }
            print("wrote \(items.count) tensors (\(parameters) parameters, \(dtype)) to \(output)")
        }
    }
}

/// Fails unless `directory` is absent or empty (commands that write a checkpoint never mix files).
func requireEmpty(_ directory: URL, option: String) throws {
    if let existing = try? FileManager.default.contentsOfDirectory(atPath: directory.path), !existing.isEmpty {
        throw ValidationError("\(option) \(directory.path) is not empty")
    }
}

/// Writes `items` as `destination`/model.safetensors, config.json edited by `editConfig` (as text),
/// and the tokenizer and processor files copied from `source`.
func writeCheckpoint(
    _ items: [SafeTensorsWriter.Item], from source: URL, to destination: URL, editConfig: (String) throws -> String
) throws {
    try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
    try SafeTensorsWriter.write(items, metadata: ["format": "pt"], to: destination.appendingPathComponent(TrainingCheckpoint.weightsFile))
    let configText = try String(contentsOf: source.appendingPathComponent("config.json"), encoding: .utf8)
    try Data(try editConfig(configText).utf8).write(to: destination.appendingPathComponent("config.json"))
    for file in TrainingCheckpoint.companionFiles {
        let from = source.appendingPathComponent(file)
        if FileManager.default.fileExists(atPath: from.path) {
            try FileManager.default.copyItem(at: from, to: destination.appendingPathComponent(file))
        }
    }
}
