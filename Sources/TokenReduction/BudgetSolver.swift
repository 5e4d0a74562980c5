import Foundation

/// What a user can ask a budget for.
public enum ReductionBudget: Equatable, Sendable {
    /// Average image tokens per decoder layer (576 = no reduction for LLaVA-1.5).
    case averageImageTokens(Double)
    /// Image-token TFLOPs as the paper counts them (`FLOPs.paper`).
    case paperTeraFLOPs(Double)
}

/// A PyramidDrop schedule and a FastV setting that meet one budget, with what each achieves.
public struct BudgetSolution: Equatable, Sendable {
    public let schedule: PyramidDropSchedule
    /// λ of the schedule (ratios are λ^s).
    public let lambda: Double
    public let fastV: FastVSetting
    public let pyramidDropAverageTokens: Double
    public let fastVAverageTokens: Double
    public let pyramidDropTeraFLOPs: Double
    public let fastVTeraFLOPs: Double
}

/// Finds schedules for a budget: PyramidDrop keeps the paper's equal stages and solves λ; when
/// the budget is below what those stages can reach (all the first stage's tokens), it uses the
/// paper's low-budget layers [2, J/4, J/2]. FastV keeps K = 2 (K = 1 when needed) and solves R.
public enum BudgetSolver {
    public static func solve(_ budget: ReductionBudget, decoder: DecoderShape, imageTokens: Int) throws -> BudgetSolution {
        let layers = decoder.layers, n = imageTokens
        if layers < 4 { throw ReductionSettingError.invalid("a budget needs a decoder of at least 4 layers, got \(layers)") }
        if n <= 0 { throw ReductionSettingError.invalid("a budget needs at least one image token") }
        let cost = BudgetCost(budget: budget, decoder: decoder, imageTokens: n)
        let full = cost.measure(NoReduction())
        if !(cost.target > 0) || cost.target > full * (1 + 1e-9) {
            throw ReductionSettingError.invalid("budget \(cost.target) is outside (0, \(full)], what no reduction costs")
        }
        let pyramid = try solvePyramidDrop(cost)
        let fastV = try solveFastV(cost)
        let pyramidReducer = PyramidDropReducer(schedule: pyramid.schedule)
        let fastVReducer = FastVReducer(setting: fastV)
        return BudgetSolution(
            schedule: pyramid.schedule, lambda: pyramid.lambda, fastV: fastV,
            pyramidDropAverageTokens: cost.averageTokens(pyramidReducer), fastVAverageTokens: cost.averageTokens(fastVReducer),
            pyramidDropTeraFLOPs: cost.teraFLOPs(pyramidReducer), fastVTeraFLOPs: cost.teraFLOPs(fastVReducer))
    }

    /// PyramidDrop: bisection on λ (the cost grows with λ), over the layer layouts in turn: the
    /// paper's equal stages, then its low-budget layout ([2, 8, 16] for 32 layers), each kept
    /// strictly increasing within 1...layers-1 for shallow decoders.
    static func solvePyramidDrop(_ cost: BudgetCost) throws -> (schedule: PyramidDropSchedule, lambda: Double) {
        let layers = cost.decoder.layers, target = cost.target
        let layouts = [(1..<4).map { $0 * layers / 4 }, [max(1, layers / 16), layers / 4, layers / 2]].map { layout in
            Array(Set(layout.filter { (1..<layers).contains($0) })).sorted()
        }.filter { !$0.isEmpty }
        var best: (schedule: PyramidDropSchedule, lambda: Double, error: Double)?
        for layout in layouts {
            func schedule(_ lambda: Double) throws -> PyramidDropSchedule {
                try PyramidDropSchedule(layers: layout, ratios: (1...layout.count).map { pow(lambda, Double($0)) }, layerCount: layers)
            }
            guard (try? schedule(0.5)) != nil else { continue }
            var low = 1e-6, high = 1.0
            for _ in 0..<60 {
                let middle = (low + high) / 2
                if cost.measure(PyramidDropReducer(schedule: try schedule(middle))) > target { high = middle } else { low = middle }
            }
            for lambda in [low, high] {
                let candidate = try schedule(lambda)
                let error = abs(cost.measure(PyramidDropReducer(schedule: candidate)) - target)
                if best == nil || error < best!.error - 1e-9 { best = (candidate, lambda, error) }
            }
            if let best, best.error <= cost.tolerance { break }
        }
        guard let pyramid = best else { throw ReductionSettingError.invalid("no schedule found for budget \(target)") }
        if pyramid.error > cost.tolerance {
            let reached = cost.measure(PyramidDropReducer(schedule: pyramid.schedule))
            throw ReductionSettingError.invalid(
                "budget \(target) cannot be met on a \(layers)-layer decoder: the nearest schedule \(pyramid.schedule.layers)/\(pyramid.schedule.ratios.map { ($0 * 1e4).rounded() / 1e4 }) gives \(reached) (the layers before the first drop see all \(cost.imageTokens) image tokens)")
        }
        return (pyramid.schedule, pyramid.lambda)
    }

    /// FastV: the kept count after layer K that meets the budget, as a drop ratio.
    static func solveFastV(_ cost: BudgetCost) throws -> FastVSetting {
        let n = cost.imageTokens, layers = cost.decoder.layers
        var fastV: FastVSetting?
        var fastVError = Double.infinity
        for layer in [2, 1] {
            for kept in 0...n {
                let ratio = 1 - Double(kept) / Double(n)
                guard ratio < 1, let setting = try? FastVSetting(layer: layer, dropRatio: ratio, layerCount: layers) else { continue }
                let error = abs(cost.measure(FastVReducer(setting: setting)) - cost.target)
                if error < fastVError - 1e-9 { fastV = setting; fastVError = error }
            }
            if fastVError <= cost.tolerance { break }
        }
        guard let fastV, fastVError <= cost.tolerance else {
            throw ReductionSettingError.invalid(
                "budget \(cost.target) cannot be met by FastV on a \(layers)-layer decoder (the layers before its drop see all \(n) image tokens)")
        }
        return fastV
    }
}

/// What a reducer costs in the budget's unit, on one decoder and image block.
struct BudgetCost {
    let budget: ReductionBudget
    let decoder: DecoderShape
    let imageTokens: Int

    /// The budget's number: average tokens or paper TFLOPs.
    var target: Double {
        switch budget {
        case let .averageImageTokens(tokens): return tokens
        case let .paperTeraFLOPs(tera): return tera
        }
    }

    /// How close a solution must come: 1% of the target, at least 1.
    var tolerance: Double { max(1, target * 0.01) }

    func averageTokens(_ reducer: VisualTokenReducer) -> Double {
        let counts = FLOPs.imageTokensPerLayer(originalCount: imageTokens, reducer: reducer, layers: decoder.layers)
        return Double(counts.reduce(0, +)) / Double(decoder.layers)
    }

    func teraFLOPs(_ reducer: VisualTokenReducer) -> Double {
        FLOPs.paper(shape: decoder, imageTokensPerLayer: FLOPs.imageTokensPerLayer(originalCount: imageTokens, reducer: reducer, layers: decoder.layers)) / 1e12
    }

    func measure(_ reducer: VisualTokenReducer) -> Double {
        switch budget {
        case .averageImageTokens: return averageTokens(reducer)
        case .paperTeraFLOPs: return teraFLOPs(reducer)
        }
    }
}
