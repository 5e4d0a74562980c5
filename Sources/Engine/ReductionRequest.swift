import Foundation
import TokenReduction

/// Which reduction a user asked for.
public enum ReductionKind: String, CaseIterable, Codable, Sendable {
    case none, fastv, pdrop
    /// The control: PyramidDrop's layers and counts, a random subset kept (`randomSeed`).
    case random
}

/// A reduction as a request describes it (the command line's flags, a server's JSON); `makeReducer` turns it into a strategy for a
/// given decoder, validating every combination.
public struct ReductionRequest: Equatable, Sendable {
    public var kind: ReductionKind = .pdrop
    /// Explicit PDrop schedule: layers (1-based) and cumulative ratios.
    public var layers: [Int]? = nil
    public var ratios: [Double]? = nil
    /// The paper's form: λ and the number of stages (equal stages over the decoder).
    public var lambda: Double? = nil
    public var stages: Int? = nil
    public var budget: ReductionBudget? = nil
    public var fastVLayer: Int? = nil
    public var fastVRatio: Double? = nil
    /// nil: the method's own default (PDrop reindex, FastV preserve).
    public var positions: PositionMode? = nil
    /// The random control's seed.
    public var randomSeed: UInt64? = nil

    public init() {}

    /// The reducer for a decoder of `decoder.layers` layers whose image blocks hold `imageTokens`
    /// tokens (nil: a prompt without images). Ratios given by hand that keep none of them are
    /// refused; a budget's solved schedule may keep none in its last stages (that is what a small
    /// budget buys), so it is not. A budget over a prompt without images has nothing to solve:
    /// the kind's default setting stands in (it drops nothing, there being nothing to drop).
    /// With multi-axis positions (`positionAxes` 3: Qwen2-VL's M-RoPE) kept tokens keep their
    /// positions; reindexing is refused (PYRAMIDDROP.md §9).
    public func makeReducer(decoder: DecoderShape, imageTokens: Int?, positionAxes: Int = 1) throws -> VisualTokenReducer {
        let reducer = try makeUncheckedReducer(decoder: decoder, imageTokens: imageTokens, positionAxes: positionAxes)
        if let imageTokens, budget == nil {
            for (drop, layer) in reducer.dropLayers.enumerated() where reducer.keptCount(originalCount: imageTokens, afterDrop: drop) < 1 {
                throw ReductionSettingError.invalid(
                    "\(describe(reducer)) keeps none of the \(imageTokens) image tokens after layer \(layer): "
                        + "the layers after it would not see the image; raise the ratio (or use --reduction none)")
            }
        }
        return reducer
    }

    private func makeUncheckedReducer(decoder: DecoderShape, imageTokens: Int?, positionAxes: Int) throws -> VisualTokenReducer {
        let scheduleFlags = layers != nil || ratios != nil || lambda != nil || stages != nil
        let fastVFlags = fastVLayer != nil || fastVRatio != nil
        switch kind {
        case .none:
            if scheduleFlags || fastVFlags || budget != nil || randomSeed != nil {
                throw ReductionSettingError.invalid("no reduction takes no schedule, FastV setting, budget or seed")
            }
            return NoReduction()
        case .pdrop, .random:
            if fastVFlags { throw ReductionSettingError.invalid("a FastV layer or ratio needs the fastv reduction") }
            if kind == .pdrop && randomSeed != nil { throw ReductionSettingError.invalid("a random seed needs the random reduction") }
            if budget != nil && scheduleFlags {
                throw ReductionSettingError.invalid("give either a budget or a schedule (layers with ratios, or λ with stages), not both")
            }
            if (layers != nil || ratios != nil) && (lambda != nil || stages != nil) {
                throw ReductionSettingError.invalid("give either layers with ratios or λ with stages, not both")
            }
            let schedule: PyramidDropSchedule
            if let budget, let imageTokens {
                schedule = try BudgetSolver.solve(budget, decoder: decoder, imageTokens: imageTokens).schedule
            } else if layers != nil || ratios != nil {
                guard let layers, let ratios else { throw ReductionSettingError.invalid("a schedule's layers and ratios go together") }
                schedule = try PyramidDropSchedule(layers: layers, ratios: ratios, layerCount: decoder.layers)
            } else if lambda != nil || stages != nil {
                schedule = try PyramidDropSchedule(lambda: lambda ?? 0.5, stages: stages ?? 4, layerCount: decoder.layers)
            } else {
                schedule = try PyramidDropSchedule.paperDefault(layerCount: decoder.layers)
            }
            let mode = try positionMode(methodDefault: .reindex, positionAxes: positionAxes)
            if kind == .random { return RandomDropReducer(schedule: schedule, seed: randomSeed ?? 0, positionMode: mode) }
            return PyramidDropReducer(schedule: schedule, positionMode: mode)
        case .fastv:
            if scheduleFlags { throw ReductionSettingError.invalid("a schedule (layers, ratios, λ, stages) needs the pdrop or random reduction") }
            if randomSeed != nil { throw ReductionSettingError.invalid("a random seed needs the random reduction") }
            if budget != nil && fastVFlags { throw ReductionSettingError.invalid("give either a budget or a FastV layer and ratio, not both") }
            let setting: FastVSetting
            if let budget, let imageTokens {
                setting = try BudgetSolver.solve(budget, decoder: decoder, imageTokens: imageTokens).fastV
            } else {
                setting = try FastVSetting(layer: fastVLayer ?? 2, dropRatio: fastVRatio ?? 0.5, layerCount: decoder.layers)
            }
            return FastVReducer(setting: setting, positionMode: try positionMode(methodDefault: .preserve, positionAxes: positionAxes))
        }
    }

    /// The position mode asked for, else the method's own; positions of several axes (M-RoPE)
    /// are only preserved: re-indexing has no meaning for a 2-D grid.
    private func positionMode(methodDefault: PositionMode, positionAxes: Int) throws -> PositionMode {
        guard positionAxes > 1 else { return positions ?? methodDefault }
        if positions == .reindex {
            throw ReductionSettingError.invalid(
                "positions 'reindex' has no meaning for this model's \(positionAxes)-axis (M-RoPE) positions: a kept image token keeps "
                    + "its (temporal, height, width) position, and renumbering a 2-D grid as a line would misplace it; use 'preserve'")
        }
        return .preserve
    }
}

/// A readable one-line account of a reducer, for reports.
public func describe(_ reducer: VisualTokenReducer) -> String {
    switch reducer {
    case let pyramid as PyramidDropReducer:
        return "pdrop layers \(pyramid.schedule.layers) ratios \(pyramid.schedule.ratios) positions \(pyramid.positionMode.rawValue)"
    case let random as RandomDropReducer:
        return "random layers \(random.schedule.layers) ratios \(random.schedule.ratios) seed \(random.seed) positions \(random.positionMode.rawValue)"
    case let fastV as FastVReducer:
        return "fastv layer \(fastV.setting.layer) drop ratio \(fastV.setting.dropRatio) positions \(fastV.positionMode.rawValue)"
    default:
        return "none"
    }
}
