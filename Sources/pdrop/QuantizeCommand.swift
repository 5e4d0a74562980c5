import ArgumentParser
import Foundation
import Models
import SafeTensors
import TensorCore

/// Writes a checkpoint whose weight matrices are Q8_0 (GGUF's blocks of 32 int8 values with one
/// fp16 scale), which generate, eval, serve and bench load; decoding then reads about half the
/// bytes of bf16.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a checkpoint with its weight matrices in Q8_0 (int8 blocks of 32 with an fp16 scale, as GGUF's).",
        discussion: """
            Every 2-D `.weight` tensor whose rows hold whole blocks of 32 values, other than embeddings and norms, \
            is stored as I8 values under its own name and F16 scales under NAME_scale (one per 32 values of a row), \
            quantized as llama.cpp's Q8_0 (d = max |x| / 127, q = round(x / d)). Every other tensor is copied as it is \
            stored. config.json gains "quantization_config": {"quant_method": "q8_0", ...}; transformers refuses \
            such a checkpoint by that name. Tokenizer and processor files are copied. OUTPUT must be absent or empty.
            """)

    @Option(help: "The checkpoint directory to read.")
    var model: String

    @Option(help: "The directory to write (absent or empty).")
    var output: String

    /// Whether `name` (shape `shape`) is a weight matrix that goes to Q8_0.
    static func quantizes(_ name: String, shape: [Int]) -> Bool {
        shape.count == 2 && shape[1] % Q8_0.blockSize == 0 && name.hasSuffix(".weight")
            && !name.contains("embed") && !name.contains("norm")
    }

    func run() throws {
        try failing {
            let source = URL(fileURLWithPath: model), destination = URL(fileURLWithPath: output)
            try requireEmpty(destination, option: "--output")
            let checkpoint = try Checkpoint(directory: source)
            var items: [SafeTensorsWriter.Item] = []
            var quantized = 0, quantizedParameters = 0
            for name in checkpoint.tensorNames {
                let entry = try checkpoint.entry(name)
                if entry.dtype == .int8 || checkpoint.contains(Q8_0Layout.scaleName(of: name)) {
                    throw ValidationError("\(model): \(name) is already quantized")
                }
                guard Self.quantizes(name, shape: entry.shape) else {
                    let bytes = try checkpoint.file(holding: name).rawBytes(name)
                    items.append(SafeTensorsWriter.Item(name: name, dtype: entry.dtype, shape: entry.shape, bytes: Data(bytes)))
                    continue
                }
                let tensor = try checkpoint.floatTensor(name)
                let (values, scales) = Q8_0.quantize(tensor.pointer, count: tensor.count)
                items.append(SafeTensorsWriter.Item(
                    name: name, dtype: .int8, shape: entry.shape, bytes: values.withUnsafeBytes { Data($0) }))
                items.append(SafeTensorsWriter.Item(
                    name: Q8_0Layout.scaleName(of: name), dtype: .float16, shape: [entry.shape[0], entry.shape[1] / Q8_0.blockSize],
                    bytes: scales.withUnsafeBytes { Data($0) }))
                quantized += 1
                quantizedParameters += tensor.count
            }
            try writeCheckpoint(items, from: source, to: destination) { config in
                guard let brace = config.firstIndex(of: "{") else { throw ValidationError("\(model)/config.json is not a JSON object") }
                if config.contains("\"\(Q8_0Layout.configurationKey)\"") {
                    throw ValidationError("\(model)/config.json already has a \(Q8_0Layout.configurationKey)")
                }
                let isEmpty = config[config.index(after: brace)...].trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("}")
                let entry = "\n  \"\(Q8_0Layout.configurationKey)\": {\"quant_method\": \"q8_0\", \"group_size\": \(Q8_0.blockSize), "
                    + "\"format\": \"pdrop: I8 values, F16 NAME_scale per 32\"}" + (isEmpty ? "" : ",")
                return config.replacingCharacters(in: brace...brace, with: "{" + entry)
            }
            print("wrote \(items.count) tensors to \(output): \(quantized) matrices (\(quantizedParameters) parameters) in Q8_0")
        }
    }
}
