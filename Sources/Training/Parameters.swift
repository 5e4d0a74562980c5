import Foundation
import Models
import TensorCore

/// The parts of LLaVA a training run updates.
public struct TrainableParts: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let projector = TrainableParts(rawValue: 1)
    public static let language = TrainableParts(rawValue: 2)
    public static let vision = TrainableParts(rawValue: 4)
    public static let all: TrainableParts = [.projector, .language, .vision]

    /// "projector" (LLaVA's pretraining), "projector,language" (its fine-tuning), "all".
    public init(parsing text: String) throws {
        var parts: TrainableParts = []
        for word in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch word {
            case "projector": parts.insert(.projector)
            case "language": parts.insert(.language)
            case "vision": parts.insert(.vision)
            case "all": parts.formUnion(.all)
            default: throw TrainingSettingError.invalid("--train: unknown part \(word.debugDescription) (projector, language, vision, all)")
            }
        }
        if parts.isEmpty { throw TrainingSettingError.invalid("--train: name at least one part (projector, language, vision, all)") }
        self = parts
    }

    public var description: String {
        [(TrainableParts.projector, "projector"), (.language, "language"), (.vision, "vision")]
            .filter { contains($0.0) }.map(\.1).joined(separator: ",")
    }
}

/// A training option that makes no sense, named.
public enum TrainingSettingError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(message): return message }
    }
}

/// Zero fp32 tensors shaped like the parameters a model asks for, kept by name: building a
/// second `LlavaModel` from it gives gradient buffers that mirror the parameters field by field.
final class GradientBuffers: WeightSource {
    private let parameters: [String: Tensor]
    private(set) var tensors: [String: Tensor] = [:]

    init(mirroring parameters: [String: Tensor]) { self.parameters = parameters }

    func contains(_ name: String) -> Bool { parameters[name] != nil }

    func take(_ name: String, shape: [Int]) -> Tensor {
        let tensor = Tensor(shape: shape)
        tensors[name] = tensor
        return tensor
    }

    func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        WeightMatrix(take(name, shape: [rows, columns]))
    }
}

extension WeightMatrix {
    /// The fp32 elements of a matrix a trainer owns (loaded with `copiesToFloat32`).
    var floats: UnsafeMutablePointer<Float> {
        precondition(storageType == .float32, "training needs fp32 weights")
        return UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Float.self))
    }
}
