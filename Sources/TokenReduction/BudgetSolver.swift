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

        func average(_ reducer: VisualTokenReducer) -> Double {
            let counts = FLOPs.imageTokensPerLayer(originalCount: n, reducer: reducer, layers: layers)
            return Double(counts.reduce(0, +)) / Double(layers)
        }
        func teraFLOPs(_ reducer: VisualTokenReducer) -> Double {
            FLOPs.paper(shape: decoder, imageTokensPerLayer: FLOPs.imageTokensPerLayer(originalCount: n, reducer: reducer, layers: layers)) / 1e12
        }
        func measure(_ reducer: VisualTokenReducer) -> Double {
            switch budget {
            case .averageImageTokens: return average(reducer)
            case .paperTeraFLOPs: return teraFLOPs(reducer)
            }
        }
        let target: Double
        switch budget {
        case let .averageImageTokens(tokens): target = tokens
        case let .paperTeraFLOPs(tera): target = tera
        }
        let full = measure(NoReduction())
        if !(target > 0) || target > full * (1 + 1e-9) {
            throw ReductionSettingError.invalid("budget \(target) is outside (0, \(full)], what no reduction costs")
        }

        // PyramidDrop: bisection on λ (the measure grows with λ), over the layer layouts in turn.
        // The paper's equal stages, then its low-budget layout ([2, 8, 16] for 32 layers), each kept
        // strictly increasing within 1...layers-1 for shallow decoders.
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
                if measure(PyramidDropReducer(schedule: try schedule(middle))) > target { high = middle } else { low = middle }
            }
            for lambda in [low, high] {
                let candidate = try schedule(lambda)
                let error = abs(measure(PyramidDropReducer(schedule: candidate)) - target)
                if best == nil || error < best!.error - 1e-9 { best = (candidate, lambda, error) }
            }
            if let best, best.error <= max(1, target * 0.01) { break }
        }
        guard let pyramid = best else { throw ReductionSettingError.invalid("no schedule found for budget \(target)") }
        let tolerance = max(1, target * 0.01)
        if pyramid.error > tolerance {
            let reached = measure(PyramidDropReducer(schedule: pyramid.schedule))
            throw ReductionSettingError.invalid(
                "budget \(target) cannot be met on a \(layers)-layer decoder: the nearest schedule \(pyramid.schedule.layers)/\(pyramid.schedule.ratios.map { ($0 * 1e4).rounded() / 1e4 }) gives \(reached) (the layers before the first drop see all \(n) image tokens)")
        }

        // FastV: the kept count after layer K that meets the budget, as a drop ratio.
        var fastV: FastVSetting?
        var fastVError = Double.infinity
        for layer in [2, 1] {
            for kept in 0...n {
                let ratio = 1 - Double(kept) / Double(n)
                guard ratio < 1, let setting = try? FastVSetting(layer: layer, dropRatio: ratio, layerCount: layers) else { continue }
                let error = abs(measure(FastVReducer(setting: setting)) - target)
                if error < fastVError - 1e-9 { fastV = setting; fastVError = error }
            }
            if fastVError <= max(1, target * 0.01) { break }
        }
        guard let fastV, fastVError <= tolerance else {
            throw ReductionSettingError.invalid(
                "budget \(target) cannot be met by FastV on a \(layers)-layer decoder (the layers before its drop see all \(n) image tokens)")
        }

        let pyramidReducer = PyramidDropReducer(schedule: pyramid.schedule)
        let fastVReducer = FastVReducer(setting: fastV)
        return BudgetSolution(
            schedule: pyramid.schedule, lambda: pyramid.lambda, fastV: fastV,
            pyramidDropAverageTokens: average(pyramidReducer), fastVAverageTokens: average(fastVReducer),
            pyramidDropTeraFLOPs: teraFLOPs(pyramidReducer), fastVTeraFLOPs: teraFLOPs(fastVReducer))
    }
}
