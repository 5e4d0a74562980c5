import Foundation
import SafeTensors
import TensorCore

/// Weights that do not fit the architecture: every missing, unexpected or wrongly shaped
/// tensor is listed at once, so one run tells the user everything that is wrong.
public struct WeightMismatchError: Error, Equatable, CustomStringConvertible {
    public let directory: String
    public let missing: [String]
    public let unexpected: [String]
    /// "name: expected [a, b], found [c, d]" (also dtypes that cannot be read as fp32).
    public let wrongShape: [String]

    public var description: String {
        var lines = ["\(directory): the checkpoint's tensors do not match the model"]
        if !missing.isEmpty { lines.append("  missing (\(missing.count)): " + missing.joined(separator: ", ")) }
        if !unexpected.isEmpty { lines.append("  unexpected (\(unexpected.count)): " + unexpected.joined(separator: ", ")) }
        if !wrongShape.isEmpty { lines.append("  wrong shape (\(wrongShape.count)): " + wrongShape.joined(separator: "; ")) }
        return lines.joined(separator: "\n")
    }
}

/// A Q8_0 tensor whose values and scales do not go together.
struct QuantizedWeightError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// How a checkpoint stores a Q8_0 matrix: the int8 values under the weight's own name, the fp16
/// scales beside them (the naming of compressed-tensors' `weight_scale`).
public enum Q8_0Layout {
    public static func scaleName(of name: String) -> String { name + "_scale" }
    /// Marks a checkpoint written by `pdrop quantize` in config.json (transformers refuses the
    /// unknown method by name rather than loading int8 values as weights).
    public static let configurationKey = "quantization_config"
}

/// Where a model's parameters come from: a checkpoint, or random values for benchmarks.
public protocol WeightSource: AnyObject {
    func contains(_ name: String) -> Bool
    /// A small tensor (norms, biases, embeddings of the vision tower) as an fp32 copy.
    func take(_ name: String, shape: [Int]) -> Tensor
    /// A (rows, columns) matrix kept in its stored type.
    func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix
}

extension WeightSource {
    /// `take` for optional tensors (biases): nil when absent and not `required`.
    public func take(_ name: String, shape: [Int], required: Bool) -> Tensor? {
        if !required && !contains(name) { return nil }
        return take(name, shape: shape)
    }
}

/// Takes tensors out of a checkpoint by name, checking shapes, and remembers what it took so
/// that `finish` can report what was missing and what was left over.
public final class WeightLoader: WeightSource {
    public let checkpoint: Checkpoint
    private var taken: Set<String> = []
    private var missing: [String] = []
    private var wrongShape: [String] = []

    /// With `copiesToFloat32`, every tensor is an fp32 copy of its own (matrices too), kept by
    /// name in `float32Tensors`: the mutable parameters a trainer updates in place.
    public let copiesToFloat32: Bool
    /// The tensors taken, by checkpoint name (only with `copiesToFloat32`).
    public private(set) var float32Tensors: [String: Tensor] = [:]

    public init(checkpoint: Checkpoint, copiesToFloat32: Bool = false) {
        self.checkpoint = checkpoint
        self.copiesToFloat32 = copiesToFloat32
    }

    public func contains(_ name: String) -> Bool { checkpoint.contains(name) }

    /// Stands in for a missing or mismatched tensor until `finish` throws: empty, whatever the
    /// shape asked for, so a config that does not describe the weights (7B defaults over a tiny
    /// checkpoint, a vocab_size of 10^12) allocates nothing before the mismatch is reported.
    private static func placeholder() -> Tensor { Tensor(shape: [0]) }

    /// The tensor `name` as fp32 with `shape`. A missing or mismatched tensor is recorded (from
    /// the safetensors header, before any data is read) and an empty placeholder returned;
    /// `finish` then throws with the complete list.
    public func take(_ name: String, shape: [Int]) -> Tensor {
        guard checkpoint.contains(name) else {
            missing.append(name)
            return Self.placeholder()
        }
        taken.insert(name)
        do {
            let entry = try checkpoint.entry(name)
            if entry.shape != shape {
                wrongShape.append("\(name): expected \(shape), found \(entry.shape)")
                return Self.placeholder()
            }
            let tensor = try entry.dtype == .int8 ? dequantized(name, shape: shape) : checkpoint.floatTensor(name)
            if copiesToFloat32 { float32Tensors[name] = tensor }
            return tensor
        } catch {
            wrongShape.append("\(name): \(error)")
            return Self.placeholder()
        }
    }

    /// The matrix `name` of shape (rows, columns), borrowed from the memory-mapped file when it is
    /// stored as F32, BF16 or F16 (no copy, no conversion at load).
    public func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        let placeholder = { WeightMatrix(Tensor(shape: [0, 0])) }
        guard checkpoint.contains(name) else {
            missing.append(name)
            return placeholder()
        }
        taken.insert(name)
        do {
            let file = try checkpoint.file(holding: name)
            let entry = try file.entry(name)
            if entry.shape != [rows, columns] {
                wrongShape.append("\(name): expected \([rows, columns]), found \(entry.shape)")
                return placeholder()
            }
            if entry.dtype == .int8 {
                let matrix = try quantizedMatrix(name, rows: rows, columns: columns)
                if !copiesToFloat32 { return matrix }
                let tensor = matrix.toTensor()
                float32Tensors[name] = tensor
                return WeightMatrix(tensor)
            }
            if copiesToFloat32 {
                let tensor = try file.floatTensor(name)
                float32Tensors[name] = tensor
                return WeightMatrix(tensor)
            }
            let type: WeightStorageType
            switch entry.dtype {
            case .float32: type = .float32
            case .bfloat16: type = .bfloat16
            case .float16: type = .float16
            default:
                wrongShape.append("\(name): dtype \(entry.dtype.rawValue) is not F32, BF16, F16 or I8 (Q8_0)")
                return placeholder()
            }
            guard let base = try file.rawBytes(name).baseAddress else { return placeholder() }
            if type == .float32 && Int(bitPattern: base) % MemoryLayout<Float>.alignment != 0 {
                // BLAS wants aligned floats; an odd offset in the file costs one copy.
                return WeightMatrix(try file.floatTensor(name))
            }
            return WeightMatrix(borrowing: base, type: type, rows: rows, columns: columns, owner: file)
        } catch {
            wrongShape.append("\(name): \(error)")
            return placeholder()
        }
    }

    /// The Q8_0 matrix stored as `name` (I8, (rows, columns)) and `name`_scale (F16, (rows, columns / 32)),
    /// borrowed from the memory-mapped file; `pdrop quantize` writes them.
    private func quantizedMatrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
        let scaleName = Q8_0Layout.scaleName(of: name)
        guard columns % Q8_0.blockSize == 0 else {
            throw QuantizedWeightError("Q8_0 rows hold whole blocks of \(Q8_0.blockSize) values, but this one has \(columns) columns")
        }
        guard checkpoint.contains(scaleName) else {
            throw QuantizedWeightError("I8 (Q8_0) without its scales \(scaleName)")
        }
        taken.insert(scaleName)
        let scaleEntry = try checkpoint.entry(scaleName)
        let scaleShape = [rows, columns / Q8_0.blockSize]
        guard scaleEntry.dtype == .float16 && scaleEntry.shape == scaleShape else {
            throw QuantizedWeightError("its Q8_0 scales \(scaleName) should be F16 \(scaleShape), found \(scaleEntry.dtype.rawValue) \(scaleEntry.shape)")
        }
        let valuesFile = try checkpoint.file(holding: name), scalesFile = try checkpoint.file(holding: scaleName)
        guard let values = try valuesFile.rawBytes(name).baseAddress, let scales = try scalesFile.rawBytes(scaleName).baseAddress else {
            return WeightMatrix(Tensor(shape: [rows, columns]))  // zero elements: nothing to borrow
        }
        return WeightMatrix(
            borrowing: values, type: .q8_0, rows: rows, columns: columns, scales: scales, owner: [valuesFile, scalesFile] as NSArray)
    }

    /// A Q8_0 tensor of any shape (rows of its last dimension) as fp32.
    private func dequantized(_ name: String, shape: [Int]) throws -> Tensor {
        let matrix = try quantizedMatrix(name, rows: shape.dropLast().reduce(1, *), columns: shape.last ?? 1)
        let tensor = Tensor(shape: shape)
        matrix.convert(from: 0, count: tensor.count, to: tensor.pointer)
        return tensor
    }

    /// Throws if anything was missing or mis-shaped, or if a tensor under one of `ownedPrefixes`
    /// was not taken. Old checkpoints' `rotary_emb.inv_freq` buffers are ignored as transformers does.
    public func finish(ownedPrefixes: [String]) throws {
        let unexpected = checkpoint.tensorNames.filter { name in
            !taken.contains(name) && ownedPrefixes.contains { name.hasPrefix($0) } && !name.hasSuffix("rotary_emb.inv_freq")
        }
        if !missing.isEmpty || !unexpected.isEmpty || !wrongShape.isEmpty {
            throw WeightMismatchError(
                directory: checkpoint.directory.path, missing: missing, unexpected: unexpected, wrongShape: wrongShape)
        }
    }
}

/// A linear layer: y = x · weightᵀ + bias, weight in PyTorch's (out_features, in_features) layout.
public struct Linear {
    public let weight: WeightMatrix  // (outFeatures, inFeatures)
    public let bias: Tensor?  // (outFeatures,)
    public var inFeatures: Int { weight.columns }
    public var outFeatures: Int { weight.rows }

    public init(weight: WeightMatrix, bias: Tensor? = nil) {
        self.weight = weight
        self.bias = bias
    }

    /// Loads `prefix.weight` and, when `bias` is true or the source has it, `prefix.bias`.
    public init(_ source: WeightSource, _ prefix: String, inFeatures: Int, outFeatures: Int, bias: Bool) {
        weight = source.takeMatrix(prefix + ".weight", rows: outFeatures, columns: inFeatures)
        self.bias = source.take(prefix + ".bias", shape: [outFeatures], required: bias)
    }

    /// output(rows, outFeatures) = input(rows, inFeatures) · weightᵀ + bias.
    public func forward(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, rows: Int) {
        weight.multiply(output, input, inputRows: rows)
        if let bias { addBias(output, bias.pointer, rows: rows, columns: outFeatures) }
    }

    /// A new (rows, outFeatures) tensor.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        let rows = input.count / inFeatures
        let output = Tensor(shape: [rows, outFeatures])
        withExtendedLifetime(input) { forward(output.pointer, input.pointer, rows: rows) }
        return output
    }
}

/// One size config.json states and the dimension of a tensor that must equal it.
struct ConfigurationSize {
    let key: String
    let value: Int
    let tensor: String
    let axis: Int
}

/// Compares sizes config.json states with the safetensors header (shapes only, no tensor data)
/// before the model is built, so a size that does not match the weights (a vocab_size of 10^12)
/// is reported by its key instead of after model-sized allocations. `layers` is the layer count's
/// key and value and the name of a tensor of layer i; the last layer must be there. A tensor the
/// checkpoint lacks altogether (another layout or family) is left to `WeightLoader.finish`.
func checkConfigurationSizes(
    _ checkpoint: Checkpoint?, keyPrefix: String, _ sizes: [ConfigurationSize],
    layers: (key: String, count: Int, tensor: (Int) -> String)
) throws {
    guard let checkpoint else { return }
    let file = checkpoint.directory.appendingPathComponent("config.json").path
    for size in sizes where checkpoint.contains(size.tensor) {
        let shape = try checkpoint.entry(size.tensor).shape
        if shape.count > size.axis && shape[size.axis] != size.value {
            throw ConfigurationError.invalidValue(
                file: file, key: keyPrefix + size.key,
                reason: "is \(size.value) but the weights' \(size.tensor) has shape \(shape) (dimension \(size.axis) should be \(size.value))")
        }
    }
    if checkpoint.contains(layers.tensor(0)) && !checkpoint.contains(layers.tensor(layers.count - 1)) {
        throw ConfigurationError.invalidValue(
            file: file, key: keyPrefix + layers.key, reason: "is \(layers.count) but the weights have no \(layers.tensor(layers.count - 1))")
    }
}
