import Engine
import Evaluation
import Foundation
import Testing
import TestSupport
import TokenReduction

@Suite struct QualityStudyTests {
    @Test func theCostSweepHasEveryMethodAtEveryBudget() throws {
        let settings = try QualityStudy.costSettings(imageTokens: 196)
        #expect(settings.map(\.name) == ["none", "pdrop", "fastv", "random",
                                         "pdrop-b50", "fastv-b50", "random-b50", "pdrop-b33", "fastv-b33", "random-b33",
                                         "pdrop-b22", "fastv-b22", "random-b22", "pdrop-b15", "fastv-b15", "random-b15"])
        let random33 = try #require(settings.first { $0.name == "random-b33" })
        #expect(random33.request.kind == .random && random33.request.budget == .averageImageTokens(196 * 33 / 100.0))
        #expect(random33.request.randomSeed == QualityStudy.randomSeed)
        // Each setting makes a reducer for an 8-layer decoder, and the budgets are met.
        let shape = DecoderShape(layers: 8, hidden: 256, intermediate: 688, heads: 8, keyValueHeads: 4, headDim: 32, vocabulary: 857)
        for setting in settings { _ = try setting.request.makeReducer(decoder: shape, imageTokens: 196) }
    }

    @Test func theSingleDropSweepDropsOnceAfterEachLayer() throws {
        let settings = try QualityStudy.singleDropSettings(decoderLayers: 8)
        #expect(settings.count == 7 * 3)
        let third = settings[2]
        #expect(third.name == "single-L1-keep10" && third.request.layers == [1] && third.request.ratios == [0.1])
        #expect(settings.last?.name == "single-L7-keep10")
    }

    @Test func everyNthKeepsTheMixAndTheOrder() {
        #expect(QualityStudy.everyNth(Array(0..<10), count: 5) == [0, 2, 4, 6, 8])
        #expect(QualityStudy.everyNth(Array(0..<10), count: 3) == [0, 3, 6])
        #expect(QualityStudy.everyNth(Array(0..<4), count: 9) == [0, 1, 2, 3])
    }

    /// Four questions, two of a scene group and two of the digit group; two drops each.
    @Test func aSettingsResultHasGroupAccuracyKeptSharesAndRecall() throws {
        let directory = try makeTemporaryDirectory("quality-study")
        try Data("""
            {
            "0":{"answer":"circle","imageId":"a","question":"What is the shape of the red object?","type":"shape"},
            "1":{"answer":"left","imageId":"a","question":"Is the red object on the left or the right?","type":"left_right"},
            "2":{"answer":"7","imageId":"b","question":"Which digit is in the top left cell?","type":"digit_at"},
            "3":{"answer":"3","imageId":"b","question":"Which digit is in the top right cell?","type":"digit_at"}
            }
            """.utf8).write(to: directory.appendingPathComponent("answers.json"))
        try Data("""
            {"question_id":0,"patch_size":8,"grid":14,"patches":[0,1]}
            {"question_id":1,"patch_size":8,"grid":14,"patches":[0,1]}
            {"question_id":2,"patch_size":8,"grid":14,"patches":[2,3,4,5]}
            {"question_id":3,"patch_size":8,"grid":14,"patches":[6]}

            """.utf8).write(to: directory.appendingPathComponent("patches.jsonl"))
        // Kept after drop 1: 4 of 8 tokens, after drop 2: 2. Recall: q0 1 then 0.5, q1 same,
        // q2 (patches 2...5) 0.25 then 0.25, q3 (patch 6) 0 then 0.
        let kept = [[0, 1, 2, 9], [0, 2]], keptQ3 = [[0, 1, 2, 3], [0, 1]]
        let given = ["circle", "right", "7", "3"]
        var lines = ""
        for id in 0..<4 {
            let drops = id == 3 ? keptQ3 : kept
            lines += #"{"question_id":\#(id),"text":"\#(given[id])","metadata":{"setting":"pdrop","method":"pdrop","reduction":"r","average_image_tokens_per_layer":4,"paper_image_tflops":0.001,"prefill_seconds":0.01,"kept_image_tokens":\#(drops)}}"# + "\n"
        }
        let answers = directory.appendingPathComponent("main.pdrop.jsonl")
        try Data(lines.utf8).write(to: answers)
        let result = try QualityReport.settingResult(answers: answers, data: StudyData(directory: directory), imageTokens: 8)
        #expect(result.accuracy == 75)
        #expect(result.groupAccuracy["scenes, without relations"] == 50 && result.groupAccuracy["digit grids"] == 100)
        #expect(result.groupAccuracy["scenes, counting"] == nil)
        #expect(result.keptFraction == [0.5, 0.25])
        // Without the image: circle, left, and one of the two digit answers right.
        let prior = try QualityReport.priorBaseline(data: StudyData(directory: directory))
        #expect(prior.accuracy == 75 && prior.groups["scenes, without relations"] == 100 && prior.groups["digit grids"] == 50)
        // A subset: only the answered questions count, in the score and in the prior.
        let firstTwo = directory.appendingPathComponent("main.subset.jsonl")
        try Data(lines.split(separator: "\n").prefix(2).map { $0 + "\n" }.joined().utf8).write(to: firstTwo)
        let subset = try QualityReport.settingResult(answers: firstTwo, data: StudyData(directory: directory), imageTokens: 8)
        #expect(subset.accuracy == 50 && subset.result.questions == 2 && subset.result.unanswered == 0)
        #expect(subset.groupAccuracy["scenes, without relations"] == 50 && subset.groupAccuracy["digit grids"] == nil)
        let priorOfTwo = try QualityReport.priorBaseline(data: StudyData(directory: directory), questions: [.integer(0), .integer(1)])
        #expect(priorOfTwo.accuracy == 100)
        let recall = result.recall
        #expect(abs(recall[0] - (1 + 1 + 0.25 + 0) / 4) < 1e-12 && abs(recall[1] - (0.5 + 0.5 + 0.25 + 0) / 4) < 1e-12)
    }

    @Test func aTrainingRunsCostComesFromItsLog() throws {
        let log = try makeTemporaryDirectory("quality-log").appendingPathComponent("training_log.jsonl")
        let lines = (1...20).map { #"{"step":\#($0),"loss":\#($0 <= 18 ? 2.0 : 1.0),"seconds":0.5,"tokens":100,"lr":0.001}"# }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: log)
        let summary = try TrainingRunSummary(log: log)
        #expect(summary.steps == 20 && summary.seconds == 10 && summary.medianStepSeconds == 0.5 && summary.tokensPerSecond == 200 && summary.finalLoss == 1)
    }
}
