import Evaluation
import Foundation
import Testing
import TestSupport

/// LLaVA-1.5-13B's released answers, scored with the official rules, give the published numbers.
@Suite struct ScoringPublishedScoresTests {
    /// ../shared/data/llava-eval beside the repository; a clear failure when it is absent.
    func dataFolder() throws -> URL {
        let folder = Fixtures.repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data/llava-eval")
        try #require(FileManager.default.fileExists(atPath: folder.path),
                     "the LLaVA evaluation files are missing: expected \(folder.path) (shared/ beside the repository)")
        return folder
    }

    func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }

    @Test func popeMeanF1Is85Point9() throws {
        let folder = try dataFolder().appendingPathComponent("pope")
        let report = try Scoring.score(.pope, questions: folder.appendingPathComponent("llava_pope_test.jsonl"),
                                       answers: folder.appendingPathComponent("answers/llava-v1.5-13b.jsonl"),
                                       annotations: folder.appendingPathComponent("coco"))
        #expect(rounded(report.score) == 85.9)
        #expect(report.questions == 8910 && report.unanswered == 0)
        #expect(Set(report.metrics.keys).isSuperset(of: ["random.f1", "popular.f1", "adversarial.f1", "adversarial.accuracy", "random.yes_ratio"]))
    }

    @Test func scienceQAImageAccuracyIs71Point6() throws {
        let folder = try dataFolder().appendingPathComponent("scienceqa")
        let report = try Scoring.score(.scienceqa, questions: folder.appendingPathComponent("llava_test_CQM-A.json"),
                                       answers: folder.appendingPathComponent("answers/llava-v1.5-13b.jsonl"), annotations: nil)
        #expect(rounded(report.score) == 71.6)
        #expect(report.metrics["img_questions"] == 2017 && report.questions == 4241)
    }

    @Test func mmbenchCircularIs67Point7AndSinglePass75Point4() throws {
        let folder = try dataFolder().appendingPathComponent("mmbench")
        let report = try Scoring.score(.mmbench, questions: folder.appendingPathComponent("mmbench_dev_20230712.tsv"),
                                       answers: folder.appendingPathComponent("answers/llava-v1.5-13b.jsonl"), annotations: nil)
        #expect(rounded(report.score) == 67.7)
        #expect(rounded(report.metrics["single_pass_accuracy"] ?? 0) == 75.4)
        #expect(report.unanswered == 0)
    }
}
