import Testing
import Benchmarks
import TokenReduction

@Suite struct ScheduleTests {
    @Test func paperDefaultFor32Layers() throws {
        let schedule = try PyramidDropSchedule.paperDefault(layerCount: 32)
        #expect(schedule.layers == [8, 16, 24])
        #expect(schedule.ratios == [0.5, 0.25, 0.125])
        #expect(try PyramidDropSchedule.paperDefault(layerCount: 8).layers == [2, 4, 6])
    }

    /// floor(N · cumulative ratio), not a per-stage rounding: N = 577 with ratio 0.5 per stage
    /// gives 288, 144, 72 (per-stage rounding of 288.5 → 144.25 … would differ at other N).
    @Test func keptCountsAreFloorsOfCumulativeRatios() throws {
        let schedule = try PyramidDropSchedule(layers: [2, 4, 6], ratios: [0.5, 0.25, 0.125], layerCount: 8)
        #expect((0..<3).map { schedule.keptCount(originalCount: 576, afterDrop: $0) } == [288, 144, 72])
        #expect((0..<3).map { schedule.keptCount(originalCount: 577, afterDrop: $0) } == [288, 144, 72])
        #expect((0..<3).map { schedule.keptCount(originalCount: 7, afterDrop: $0) } == [3, 1, 0])
        // Per-stage ceil/floor chains would give 2 after 5 → 2 → 1; the cumulative floor of 5·0.3 and 5·0.09:
        let uneven = try PyramidDropSchedule(layers: [1, 2], ratios: [0.3, 0.09], layerCount: 4)
        #expect(uneven.keptCount(originalCount: 5, afterDrop: 0) == 1)
        #expect(uneven.keptCount(originalCount: 2880, afterDrop: 1) == 259)
    }

    @Test func lambdaAndStagesGiveEqualStages() throws {
        let schedule = try PyramidDropSchedule(lambda: 0.5, stages: 4, layerCount: 32)
        #expect(schedule.layers == [8, 16, 24] && schedule.ratios == [0.5, 0.25, 0.125])
        let three = try PyramidDropSchedule(lambda: 0.19, stages: 3, layerCount: 32)
        #expect(three.layers == [10, 21])
        #expect(abs(three.ratios[1] - 0.0361) < 1e-12)
    }

    @Test func invalidSchedulesAreClearErrors() {
        func message(_ body: () throws -> PyramidDropSchedule) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        #expect(message { try .init(layers: [8, 16], ratios: [0.5], layerCount: 32) }.contains("2 layers"))
        #expect(message { try .init(layers: [8, 8], ratios: [0.5, 0.25], layerCount: 32) }.contains("strictly increasing"))
        #expect(message { try .init(layers: [0], ratios: [0.5], layerCount: 32) }.contains("outside 1...31"))
        #expect(message { try .init(layers: [32], ratios: [0.5], layerCount: 32) }.contains("outside 1...31"))
        #expect(message { try .init(layers: [8], ratios: [0], layerCount: 32) }.contains("outside (0, 1]"))
        #expect(message { try .init(layers: [8], ratios: [1.5], layerCount: 32) }.contains("outside (0, 1]"))
        #expect(message { try .init(layers: [8, 16], ratios: [0.25, 0.5], layerCount: 32) }.contains("increase"))
        #expect(message { try .init(layers: [], ratios: [], layerCount: 32) }.contains("empty"))
        #expect(message { try .init(lambda: 0, stages: 4, layerCount: 32) }.contains("lambda"))
        #expect(message { try .init(lambda: 0.5, stages: 1, layerCount: 32) }.contains("stages"))
        #expect(throws: ReductionSettingError.self) { try FastVSetting(layer: 0, layerCount: 32) }
        #expect(throws: ReductionSettingError.self) { try FastVSetting(layer: 2, dropRatio: 1, layerCount: 32) }
    }

    /// FastV keeps round(N · (1 - R)) with Python's rounding (half to even).
    @Test func fastVKeepsRoundedCount() throws {
        #expect(try FastVSetting(layerCount: 32).keptCount(originalCount: 576) == 288)
        #expect(try FastVSetting(layer: 2, dropRatio: 0.5, layerCount: 32).keptCount(originalCount: 5) == 2)  // round(2.5) = 2
        #expect(try FastVSetting(layer: 2, dropRatio: 0.5, layerCount: 32).keptCount(originalCount: 7) == 4)  // round(3.5) = 4
        #expect(try FastVSetting(layer: 2, dropRatio: 0.75, layerCount: 32).keptCount(originalCount: 576) == 144)
    }
}

@Suite struct SelectionTests {
    @Test func topIndicesAreSortedAndTiesGoToLowerIndex() {
        #expect(topIndicesSorted([0.1, 0.9, 0.3, 0.9, 0.2], count: 2) == [1, 3])
        #expect(topIndicesSorted([0.5, 0.5, 0.5, 0.5], count: 2) == [0, 1])
        #expect(topIndicesSorted([0.1, 0.2, 0.3], count: 0) == [])
        #expect(topIndicesSorted([0.3, 0.1, 0.2], count: 3) == [0, 1, 2])
        #expect(topIndicesSorted([0.3, 0.1, 0.2], count: 5) == [0, 1, 2])
        #expect(topIndicesSorted([1, 3, 2, 3, 0, 3], count: 2) == [1, 3])
    }

    @Test func ratioOneIsANoOp() throws {
        let schedule = try PyramidDropSchedule(layers: [1], ratios: [1.0], layerCount: 4)
        let reducer = PyramidDropReducer(schedule: schedule)
        #expect(reducer.keptCount(originalCount: 576, afterDrop: 0) == 576)
        #expect(FLOPs.imageTokensPerLayer(originalCount: 576, reducer: reducer, layers: 4) == [576, 576, 576, 576])
    }

    @Test func imageTokensPerLayerFollowTheStages() throws {
        let pdrop = PyramidDropReducer(schedule: try .init(layers: [2, 4, 6], ratios: [0.5, 0.25, 0.125], layerCount: 8))
        #expect(FLOPs.imageTokensPerLayer(originalCount: 576, reducer: pdrop, layers: 8) == [576, 576, 288, 288, 144, 144, 72, 72])
        let fastv = FastVReducer(setting: try .init(layer: 2, dropRatio: 0.5, layerCount: 8))
        #expect(FLOPs.imageTokensPerLayer(originalCount: 576, reducer: fastv, layers: 8) == [576, 576] + Array(repeating: 288, count: 6))
        #expect(FLOPs.imageTokensPerLayer(originalCount: 576, reducer: NoReduction(), layers: 3) == [576, 576, 576])
        #expect(fastv.positionMode == .preserve && pdrop.positionMode == .reindex)
    }
}

@Suite struct FLOPsTests {
    func paperTeraFLOPs(_ preset: ModelPreset, _ reducer: VisualTokenReducer) -> Double {
        let perLayer = FLOPs.imageTokensPerLayer(originalCount: preset.imageTokens, reducer: reducer, layers: preset.decoder.layers)
        return FLOPs.paper(shape: preset.decoder, imageTokensPerLayer: perLayer) / 1e12
    }

    /// The paper's four figures, to 3 significant digits.
    @Test func paperFiguresAreReproduced() throws {
        let pdrop = PyramidDropReducer(schedule: try .paperDefault(layerCount: 32))
        #expect(String(format: "%.2f", paperTeraFLOPs(.llava15_7B, NoReduction())) == "3.82")
        #expect(String(format: "%.2f", paperTeraFLOPs(.llava15_7B, pdrop)) == "1.78")
        #expect(String(format: "%.1f", paperTeraFLOPs(.llavaNext7B, NoReduction())) == "20.8")
        #expect(String(format: "%.2f", paperTeraFLOPs(.llavaNext7B, pdrop)) == "9.46")
    }

    /// The exact layer count against a direct sum over rows of causal attention.
    @Test func exactDecoderLayerCountsCausalAttentionRowByRow() {
        let shape = DecoderShape(layers: 1, hidden: 8, intermediate: 16, heads: 2, keyValueHeads: 1, headDim: 4, vocabulary: 10)
        let tokens = 5, past = 3
        var attention = 0
        for row in 0..<tokens { attention += 2 * (past + row + 1) * 8 }
        let projections = tokens * 8 * (8 + 4 + 4 + 8)
        let mlp = 3 * tokens * 8 * 16
        #expect(FLOPs.exactDecoderLayer(shape: shape, tokens: tokens, pastTokens: past) == Double(projections + attention + mlp))
    }
}

@Suite struct BudgetSolverTests {
    /// The paper's budgets on LLaVA-1.5-7B: each solution lands within one token of the budget.
    @Test(arguments: [288.0, 192.0, 128.0, 64.0])
    func averageTokenBudgetsAreMet(_ budget: Double) throws {
        let solution = try BudgetSolver.solve(.averageImageTokens(budget), decoder: ModelPreset.llava15_7B.decoder, imageTokens: 576)
        #expect(abs(solution.pyramidDropAverageTokens - budget) <= 1, "PDrop \(solution.schedule) gives \(solution.pyramidDropAverageTokens)")
        #expect(abs(solution.fastVAverageTokens - budget) <= 1, "FastV \(solution.fastV) gives \(solution.fastVAverageTokens)")
    }

    @Test func defaultBudgetGivesTheDefaultSchedule() throws {
        // The default schedule averages (576 + 288 + 144 + 72) / 4 = 270 tokens.
        let solution = try BudgetSolver.solve(.averageImageTokens(270), decoder: ModelPreset.llava15_7B.decoder, imageTokens: 576)
        #expect(solution.schedule.layers == [8, 16, 24])
        #expect(abs(solution.lambda - 0.5) < 0.01)
        #expect(solution.fastV.layer == 2)
    }

    @Test func lowBudgetsUseTheEarlyLayout() throws {
        let solution = try BudgetSolver.solve(.averageImageTokens(64), decoder: ModelPreset.llava15_7B.decoder, imageTokens: 576)
        #expect(solution.schedule.layers == [2, 8, 16])
        #expect(abs(solution.lambda - 0.19) < 0.02)
    }

    /// Shallow decoders get valid layouts too (the low-budget layout of 8 layers is [1, 2, 4]).
    @Test(arguments: [4, 5, 8, 12])
    func shallowDecodersGetValidSchedules(_ layers: Int) throws {
        let shape = DecoderShape(layers: layers, hidden: 64, intermediate: 128, heads: 4, keyValueHeads: 2, headDim: 16, vocabulary: 100)
        for budget in [300.0, 150.0, 576.0 / Double(layers) + 10] {
            let solution = try BudgetSolver.solve(.averageImageTokens(budget), decoder: shape, imageTokens: 576)
            #expect(solution.schedule.layers.allSatisfy { (1..<layers).contains($0) })
            #expect(zip(solution.schedule.layers, solution.schedule.layers.dropFirst()).allSatisfy { $0 < $1 })
        }
        let eightLayers = DecoderShape(layers: 8, hidden: 64, intermediate: 128, heads: 4, keyValueHeads: 2, headDim: 16, vocabulary: 100)
        let eight = try BudgetSolver.solve(.averageImageTokens(80), decoder: eightLayers, imageTokens: 576)
        #expect(eight.schedule.layers == [1, 2, 4] && abs(eight.pyramidDropAverageTokens - 80) <= 1)
        // Below 576 / 8 = 72 no schedule can go: layer 1 always sees every image token.
        #expect(throws: ReductionSettingError.self) { try BudgetSolver.solve(.averageImageTokens(60), decoder: eightLayers, imageTokens: 576) }
    }

    @Test func teraFLOPsBudgetIsMet() throws {
        let solution = try BudgetSolver.solve(.paperTeraFLOPs(1.78), decoder: ModelPreset.llava15_7B.decoder, imageTokens: 576)
        #expect(abs(solution.pyramidDropTeraFLOPs - 1.78) < 0.02)
        #expect(abs(solution.fastVTeraFLOPs - 1.78) < 0.02)
    }

    @Test func impossibleBudgetsAreErrors() {
        #expect(throws: ReductionSettingError.self) {
            try BudgetSolver.solve(.averageImageTokens(600), decoder: ModelPreset.llava15_7B.decoder, imageTokens: 576)
        }
        #expect(throws: ReductionSettingError.self) {
            try BudgetSolver.solve(.averageImageTokens(0), decoder: ModelPreset.llava15_7B.decoder, imageTokens: 576)
        }
    }
}

/// The decision of a drop on synthetic scores, without a model.
@Suite struct DropPlanTests {
    let pdrop = PyramidDropReducer(schedule: try! PyramidDropSchedule(layers: [1, 2, 3], ratios: [0.5, 0.25, 0.125], layerCount: 4))

    @Test func textSurvivesAndKeptImageTokensStayInOrder() {
        // Sequence: 2 text rows, an 8-token image block, 1 text row.
        let scores: [Float] = [9, 9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.9, 0.05, 0.4, 9]
        let plan = DropPlan(scores: scores, blocks: [ImageBlockState(rows: 2..<10)], reducer: pdrop, drop: 0)
        #expect(plan.keptImageTokens == [[1, 3, 5, 7]])  // scores 0.8, 0.7, 0.9, 0.4 are the top 4 of 8
        #expect(plan.keptRows == [0, 1, 3, 5, 7, 9, 10])
        #expect(plan.blocks == [ImageBlockState(start: 2, originalIndices: [1, 3, 5, 7], originalCount: 8)])
        #expect(plan.positions(from: Array(0..<11), mode: .reindex) == Array(0..<7))
        #expect(plan.positions(from: Array(0..<11), mode: .preserve) == [0, 1, 3, 5, 7, 9, 10])
    }

    /// Budgets are floors of the cumulative ratio of the ORIGINAL N, even when the block already shrank.
    @Test func laterDropsCountFromTheOriginalBlock() {
        let block = ImageBlockState(start: 1, originalIndices: [1, 3, 5, 7], originalCount: 8)  // after drop 0
        let scores: [Float] = [0, 0.5, 0.9, 0.1, 0.3, 0]
        let plan = DropPlan(scores: scores, blocks: [block], reducer: pdrop, drop: 1)
        #expect(plan.keptImageTokens == [[1, 3]])  // floor(8 · 0.25) = 2: original 1 (0.5) and 3 (0.9)
        let last = DropPlan(scores: [0, 0.5, 0.9, 0], blocks: plan.blocks, reducer: pdrop, drop: 2)
        #expect(last.keptImageTokens == [[3]])  // floor(8 · 0.125) = 1
    }

    @Test func tiesGoToTheLowerIndexAndUnevenNFloors() {
        let scores: [Float] = [1, 1, 1, 1, 1, 1, 1]  // a 7-token block, all equal
        let plan = DropPlan(scores: scores, blocks: [ImageBlockState(rows: 0..<7)], reducer: pdrop, drop: 0)
        #expect(plan.keptImageTokens == [[0, 1, 2]])  // floor(3.5) = 3, the lowest indices
        let last = DropPlan(scores: scores, blocks: [ImageBlockState(rows: 0..<7)], reducer: pdrop, drop: 2)
        #expect(last.keptImageTokens == [[]] && last.keptRows.isEmpty)  // floor(0.875) = 0
    }

    /// Two blocks are ranked and cut each on its own, with its own N.
    @Test func twoImageBlocksEachKeepTheirOwnBudget() {
        // text, block A (4 tokens, high scores), text, block B (6 tokens, low scores), text
        let scores: [Float] = [5, 0.9, 0.8, 0.7, 0.95, 5, 0.01, 0.03, 0.02, 0.05, 0.04, 0.001, 5]
        let plan = DropPlan(
            scores: scores, blocks: [ImageBlockState(rows: 1..<5), ImageBlockState(rows: 6..<12)], reducer: pdrop, drop: 0)
        #expect(plan.keptImageTokens == [[0, 3], [1, 3, 4]])
        #expect(plan.keptRows == [0, 1, 4, 5, 7, 9, 10, 12])
        #expect(plan.blocks.map(\.start) == [1, 4])
    }

    @Test func singleStageFastVAndRatioOne() throws {
        let fastV = FastVReducer(setting: try FastVSetting(layer: 1, dropRatio: 0.75, layerCount: 4))
        let scores: [Float] = [0.2, 0.9, 0.1, 0.4, 0.3, 0.8, 0.7, 0.6]
        #expect(DropPlan(scores: scores, blocks: [ImageBlockState(rows: 0..<8)], reducer: fastV, drop: 0).keptImageTokens == [[1, 5]])
        let identity = PyramidDropReducer(schedule: try PyramidDropSchedule(layers: [1], ratios: [1], layerCount: 4))
        let plan = DropPlan(scores: scores, blocks: [ImageBlockState(rows: 2..<6)], reducer: identity, drop: 0)
        #expect(plan.keptRows == Array(0..<8) && plan.keptImageTokens == [[0, 1, 2, 3]])
    }
}

@Suite struct RandomReducerTests {
    @Test func theRandomControlKeepsPyramidDropsCountsAtItsLayers() throws {
        let schedule = try PyramidDropSchedule.paperDefault(layerCount: 32)
        let random = RandomDropReducer(schedule: schedule, seed: 3)
        let pyramid = PyramidDropReducer(schedule: schedule)
        #expect(random.dropLayers == pyramid.dropLayers)
        for drop in 0..<3 { #expect(random.keptCount(originalCount: 576, afterDrop: drop) == pyramid.keptCount(originalCount: 576, afterDrop: drop)) }
        #expect(random.scoring == .random(seed: 3) && random.positionMode == .reindex)
        // It ranks nothing, so its exact FLOPs are PyramidDrop's without the ranking.
        let shape = ModelPreset.llava15_7B.decoder
        let randomReport = FLOPs.prefillReport(decoder: shape, visionAndProjector: 0, textTokens: 40, imageBlockSizes: [576], reducer: random)
        let pyramidReport = FLOPs.prefillReport(decoder: shape, visionAndProjector: 0, textTokens: 40, imageBlockSizes: [576], reducer: pyramid)
        #expect(randomReport.exactRanking == 0 && pyramidReport.exactRanking > 0)
        #expect(randomReport.exactLanguageModel == pyramidReport.exactLanguageModel)
        #expect(randomReport.paperImageTeraFLOPs == pyramidReport.paperImageTeraFLOPs)
    }
}
