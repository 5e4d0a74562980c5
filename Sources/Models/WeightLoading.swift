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

/// Takes tensors out of a checkpoint by name, checking shapes, and remembers what it took so
/// that `finish` can report what was missing and what was left over.
public final class WeightLoader {
    public let checkpoint: Checkpoint
    private var taken: Set<String> = []
    private var missing: [String] = []
    private var wrongShape: [String] = []

    public init(checkpoint: Checkpoint) { self.checkpoint = checkpoint }

    public func contains(_ name: String) -> Bool { checkpoint.contains(name) }

    /// The tensor `name` as fp32 with `shape`. A missing or mismatched tensor is recorded and a
    /// zero placeholder returned; `finish` then throws with the complete list.
    public func take(_ name: String, shape: [Int]) -> Tensor {
        guard checkpoint.contains(name) else {
            missing.append(name)
            return Tensor(shape: shape)
        }
        taken.insert(name)
        do {
            let entry = try checkpoint.entry(name)
            if entry.shape != shape {
                wrongShape.append("\(name): expected \(shape), found \(entry.shape)")
                return Tensor(shape: shape)
            }
            return try checkpoint.floatTensor(name)
        } catch {
            wrongShape.append("\(name): \(error)")
            return Tensor(shape: shape)
        }
    }

    /// `take` for optional tensors (biases): nil when absent and not `required`.
    public func take(_ name: String, shape: [Int], required: Bool) -> Tensor? {
        if !required && !checkpoint.contains(name) { return nil }
        return take(name, shape: shape)
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
    public let weight: Tensor  // (outFeatures, inFeatures)
    public let bias: Tensor?  // (outFeatures,)
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public init(weight: Tensor, bias: Tensor? = nil) {
        self.weight = weight
        self.bias = bias
    }

    /// Loads `prefix.weight` and, when `bias` is true or the checkpoint has it, `prefix.bias`.
    public init(_ loader: WeightLoader, _ prefix: String, inFeatures: Int, outFeatures: Int, bias: Bool) {
        weight = loader.take(prefix + ".weight", shape: [outFeatures, inFeatures])
        self.bias = loader.take(prefix + ".bias", shape: [outFeatures], required: bias)
    }

    /// output(rows, outFeatures) = input(rows, inFeatures) · weightᵀ + bias.
    public func forward(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, rows: Int) {
        BLAS.matmulTransposedB(output, input, weight.pointer, m: rows, n: outFeatures, k: inFeatures)
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
