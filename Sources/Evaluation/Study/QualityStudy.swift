import Engine
import Foundation
import TokenReduction

/// The paper's study in miniature (docs/QUALITY.md): which settings are run, and on which
/// questions. The settings are plain `EvaluationSetting`s; their names tie answers files to the
/// report's tables.
public enum QualityStudy {
    /// Budgets of the accuracy-against-cost sweep, as percentages of the image tokens kept on
    /// average per decoder layer (the paper's 192 / 128 / 64 of 576 are 33% / 22% / 11%; on an 8-layer
    /// decoder whose first layer sees every token, nothing can go below 12.5%, hence 15%).
    public static let budgetPercents = [50, 33, 22, 15]
    /// Keep ratios of the single-drop (redundancy by depth) sweep: drop 50%, 75%, 90%.
    public static let singleDropKeepPercents = [50, 25, 10]
    /// The seed of the random-dropping control.
    public static let randomSeed: UInt64 = 0

    /// none; PyramidDrop, FastV and random dropping at their default settings; then each of the
    /// three at every budget (PyramidDrop's and random's schedules solved for the budget, FastV's
    /// ratio solved at its layer).
    public static func costSettings(imageTokens: Int) throws -> [EvaluationSetting] {
        func request(_ kind: ReductionKind, budgetPercent: Int? = nil) -> ReductionRequest {
            var request = ReductionRequest()
            request.kind = kind
            if kind == .random { request.randomSeed = randomSeed }
            if let budgetPercent { request.budget = .averageImageTokens(Double(imageTokens * budgetPercent) / 100) }
            return request
        }
        var settings = [
            try EvaluationSetting(name: "none", request: request(.none)),
            try EvaluationSetting(name: "pdrop", request: request(.pdrop)),
            try EvaluationSetting(name: "fastv", request: request(.fastv)),
            try EvaluationSetting(name: "random", request: request(.random)),
        ]
        for percent in budgetPercents {
            for kind in [ReductionKind.pdrop, .fastv, .random] {
                settings.append(try EvaluationSetting(name: "\(kind.rawValue)-b\(percent)", request: request(kind, budgetPercent: percent)))
            }
        }
        return settings
    }

    /// One drop after layer `layer` (1 ..< layers), keeping `percent`% of the image tokens ranked
    /// as PyramidDrop ranks them: the paper's Figure 1.
    public static func singleDropSettings(decoderLayers: Int) throws -> [EvaluationSetting] {
        try (1..<decoderLayers).flatMap { layer in
            try singleDropKeepPercents.map { percent in
                var request = ReductionRequest()
                request.kind = .pdrop
                request.layers = [layer]
                request.ratios = [Double(percent) / 100]
                return try EvaluationSetting(name: singleDropName(layer: layer, keepPercent: percent), request: request)
            }
        }
    }

    public static func singleDropName(layer: Int, keepPercent: Int) -> String { "single-L\(layer)-keep\(keepPercent)" }

    /// The settings a comparison model (trained without PyramidDrop, or with it) is evaluated under.
    public static func comparisonSettings() throws -> [EvaluationSetting] {
        var request = ReductionRequest()
        request.kind = .none
        return [try EvaluationSetting(name: "none", request: request), try EvaluationSetting(name: "pdrop", request: ReductionRequest())]
    }

    /// Every `stride`-th question (from the first), so a subset keeps the tasks' mix.
    public static func everyNth<T>(_ items: [T], count: Int) -> [T] {
        guard count > 0, count < items.count else { return items }
        let stride = Double(items.count) / Double(count)
        return (0..<count).map { items[Int((Double($0) * stride).rounded(.down))] }
    }
}

/// The answer categories of the generated tasks, grouped as the issue and the report discuss
/// them. Categories outside these groups are reported on their own.
public enum TaskQuestionGroups {
    public static let groups: [(name: String, categories: [String])] = [
        ("scenes, without relations", ["shape", "left_right", "top_bottom"]),
        ("scenes, with relations", ["closest_colour", "furthest_shape", "same_shape_count"]),
        ("scenes, counting", ["count"]),
        ("digit grids", ["digit_at", "row_sum", "where"]),
    ]
}
