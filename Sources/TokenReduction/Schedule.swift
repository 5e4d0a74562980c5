import Foundation

/// A schedule, solver or reducer setting that cannot be used, with what is wrong.
public enum ReductionSettingError: Error, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case let .invalid(message): return message
        }
    }
}

/// Where kept tokens sit after a drop.
public enum PositionMode: String, Codable, CaseIterable, Sendable {
    /// Positions 0..<length again after each drop; decode positions are each layer's cache length (PDrop's default).
    case reindex
    /// Kept tokens keep their original positions; decode continues from the full prompt length (FastV's default).
    case preserve
}

/// A PyramidDrop schedule: after `layers[s]` decoder layers have run (1-based), each image block
/// keeps floor(N · ratios[s]) of its original N tokens. Ratios are cumulative fractions of N.
public struct PyramidDropSchedule: Equatable, Codable, Sendable {
    public let layers: [Int]
    public let ratios: [Double]

    /// Validates against a decoder of `layerCount` layers: lists of equal length, layers strictly
    /// increasing within 1...layerCount-1, ratios in (0, 1] and non-increasing.
    public init(layers: [Int], ratios: [Double], layerCount: Int) throws {
        if layers.count != ratios.count {
            throw ReductionSettingError.invalid("schedule has \(layers.count) layers \(layers) but \(ratios.count) ratios \(ratios)")
        }
        if layers.isEmpty { throw ReductionSettingError.invalid("schedule is empty: give at least one layer and ratio") }
        for (index, layer) in layers.enumerated() {
            if layer < 1 || layer > layerCount - 1 {
                throw ReductionSettingError.invalid("schedule layer \(layer) is outside 1...\(layerCount - 1) for a \(layerCount)-layer decoder")
            }
            if index > 0 && layer <= layers[index - 1] {
                throw ReductionSettingError.invalid("schedule layers \(layers) are not strictly increasing")
            }
        }
        for (index, ratio) in ratios.enumerated() {
            if !(ratio > 0 && ratio <= 1) {
                throw ReductionSettingError.invalid("schedule ratio \(ratio) is outside (0, 1]")
            }
            if index > 0 && ratio > ratios[index - 1] {
                throw ReductionSettingError.invalid("schedule ratios \(ratios) increase: they are cumulative fractions of the original tokens and must not grow")
            }
        }
        self.layers = layers
        self.ratios = ratios
    }

    /// The paper's form: `stages` equal stages over the decoder (a drop after every J/stages
    /// layers, J = layerCount) with ratio λ^s after stage s.
    public init(lambda: Double, stages: Int, layerCount: Int) throws {
        if stages < 2 { throw ReductionSettingError.invalid("a schedule needs at least 2 stages (one drop), got \(stages)") }
        if stages > layerCount { throw ReductionSettingError.invalid("\(stages) stages exceed the \(layerCount) decoder layers") }
        if !(lambda > 0 && lambda <= 1) { throw ReductionSettingError.invalid("--lambda \(lambda) is outside (0, 1]") }
        let layers = (1..<stages).map { $0 * layerCount / stages }
        let ratios = (1..<stages).map { pow(lambda, Double($0)) }
        try self.init(layers: layers, ratios: ratios, layerCount: layerCount)
    }

    /// The paper's default: 4 stages, λ = 0.5 (for 32 layers: after 8, 16, 24 keep 50%, 25%, 12.5%).
    public static func paperDefault(layerCount: Int) throws -> PyramidDropSchedule {
        try PyramidDropSchedule(lambda: 0.5, stages: 4, layerCount: layerCount)
    }

    /// floor(N · r_s): truncation of the cumulative ratio times the original count, as the released code does.
    public func keptCount(originalCount: Int, afterDrop drop: Int) -> Int {
        Int((Double(originalCount) * ratios[drop]).rounded(.down))
    }
}

/// FastV: after `layer` decoder layers, keep round(N · (1 - dropRatio)) image tokens, once.
public struct FastVSetting: Equatable, Codable, Sendable {
    public let layer: Int
    public let dropRatio: Double

    public init(layer: Int = 2, dropRatio: Double = 0.5, layerCount: Int) throws {
        if layer < 1 || layer > layerCount - 1 {
            throw ReductionSettingError.invalid("FastV layer \(layer) is outside 1...\(layerCount - 1) for a \(layerCount)-layer decoder")
        }
        if !(dropRatio >= 0 && dropRatio < 1) {
            throw ReductionSettingError.invalid("FastV drop ratio \(dropRatio) is outside [0, 1)")
        }
        self.layer = layer
        self.dropRatio = dropRatio
    }

    /// Python's round (half to even) of N · (1 - R), as the released code computes it.
    public func keptCount(originalCount: Int) -> Int {
        Int((Double(originalCount) * (1 - dropRatio)).rounded(.toNearestOrEven))
    }
}
