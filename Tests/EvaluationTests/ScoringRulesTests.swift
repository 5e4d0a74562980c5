@testable import Evaluation
import Foundation
import Testing
import TestSupport

/// Writes files into a fresh temporary folder and scores them.
struct ScoringScratch {
    let folder: URL
    init() throws { folder = try makeTemporaryDirectory("scoring") }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// A LLaVA answers file of (question id as JSON, text) pairs.
    func answers(_ pairs: [(String, String)]) throws -> URL {
        let lines = try pairs.map { id, text in
            "{\"question_id\": \(id), \"text\": \(String(decoding: try JSONEncoder().encode(text), as: UTF8.self))}"
        }
        return try write("answers.jsonl", lines.joined(separator: "\n"))
    }
}

@Suite struct EvalAIAnswerProcessorTests {
    @Test func eachNormalisationStep() {
        #expect(EvalAIAnswerProcessor.normalize("Yes!") == "yes")                 // punctuation at the end
        #expect(EvalAIAnswerProcessor.normalize("red-white") == "red white")      // inside a word: a space
        #expect(EvalAIAnswerProcessor.normalize("10,000") == "10000")             // digits' commas go
        #expect(EvalAIAnswerProcessor.normalize("The dog") == "dog")              // articles
        #expect(EvalAIAnswerProcessor.normalize("a cat and an apple") == "cat and apple")
        #expect(EvalAIAnswerProcessor.normalize("dont") == "don't")               // contractions
        #expect(EvalAIAnswerProcessor.normalize("two") == "2")                    // number words
        #expect(EvalAIAnswerProcessor.normalize("none") == "0")
        #expect(EvalAIAnswerProcessor.normalize("1.5") == "1.5")                  // a period before a digit stays
        #expect(EvalAIAnswerProcessor.normalize("end.") == "end")                 // other periods go
        #expect(EvalAIAnswerProcessor.normalize("Man's hat\n") == "man 's hat")
        #expect(EvalAIAnswerProcessor.normalize("") == "")
    }

    @Test func leaveOneOutAccuracyByHand() {
        // "2" twice among ten: each of the 8 other answers left out leaves 2 matches (2/3), each
        // "2" left out leaves 1 (1/3): (8 * 2/3 + 2 * 1/3) / 10 = 0.6.
        let humans = ["2", "two", "3", "3", "3", "3", "3", "3", "3", "3"]
        #expect(abs(EvalAIAnswerProcessor.vqaAccuracy(prediction: "Two.", humanAnswers: humans) - 0.6) < 1e-12)
        #expect(EvalAIAnswerProcessor.vqaAccuracy(prediction: "3", humanAnswers: humans) == 1)  // 7 or 8 others always ≥ 3
        #expect(EvalAIAnswerProcessor.vqaAccuracy(prediction: "4", humanAnswers: humans) == 0)
    }
}

@Suite struct ScoringParsingTests {
    @Test func popeReadsNoFromTheFirstSentenceOnly() {
        #expect(!POPEScoring.readsAsYes("No"))
        #expect(!POPEScoring.readsAsYes("There is not, a dog."))
        #expect(POPEScoring.readsAsYes("Yes. There is no cat."))    // "no" after the first '.'
        #expect(POPEScoring.readsAsYes("Nothing"))                  // a word, not a substring
        #expect(POPEScoring.readsAsYes(""))
    }

    @Test func scienceQAEachBranch() {
        #expect(ScienceQAScoring.parseOption("B") == "B")                       // an option letter
        #expect(ScienceQAScoring.parseOption("F") == nil)                       // not one of A-E
        #expect(ScienceQAScoring.parseOption("C. a rock") == "C")               // leading "X. "
        #expect(ScienceQAScoring.parseOption("I think. The answer is D.") == "D")
        #expect(ScienceQAScoring.parseOption("The answer is A. The answer is B.") == nil)  // two matches fail
        #expect(ScienceQAScoring.parseOption("The answer is A") == nil)         // the pattern needs a character after
        #expect(ScienceQAScoring.parseOption(" B") == nil)                      // no stripping
        #expect(ScienceQAScoring.parseOption("") == nil)
    }

    @Test func mmbenchOptionAndTextInference() {
        let choices = [(letter: "A", text: "Red apple"), (letter: "B", text: "Green"), (letter: "C", text: "Blue")]
        #expect(MMBenchScoring.inferOption("B", choices: choices) == "B")
        #expect(MMBenchScoring.inferOption("(C) blue", choices: choices) == "C")
        #expect(MMBenchScoring.inferOption("A or B", choices: choices) == nil)           // ambiguous letters, no unique text
        #expect(MMBenchScoring.inferOption("Answer: Apple is red", choices: choices) == nil)  // "A" inside words is no letter
        #expect(MMBenchScoring.inferOption("It is green.", choices: choices) == "B")     // option text contained
        #expect(MMBenchScoring.inferOption("green or blue", choices: choices) == nil)    // two texts
        #expect(MMBenchScoring.inferOption("Cannot determine the answer", choices: choices) == "Z")
        #expect(MMBenchScoring.inferOption("D", choices: choices) == nil)                // not an option of this row
    }

    @Test func mmeParsesTheFirstFourCharacters() {
        #expect(MMEScoring.parseYesNo("Yes") == "yes")
        #expect(MMEScoring.parseYesNo("No, it is not.") == "no")
        #expect(MMEScoring.parseYesNo("I think yes") == nil)
        #expect(MMEScoring.parseYesNo("") == nil)
    }

    @Test func anlsExactNearAndBelowThreshold() {
        #expect(ShortAnswerScoring.anls(prediction: " Total ", answer: "total") == 1)
        #expect(abs(ShortAnswerScoring.anls(prediction: "totals", answer: "total") - (1 - 1.0 / 6)) < 1e-12)
        #expect(ShortAnswerScoring.anls(prediction: "ab", answer: "cd") == 0)
        #expect(ShortAnswerScoring.anls(prediction: "ab", answer: "ac") == 0)   // distance exactly 0.5: 0
    }

    @Test func chartQARelaxedAccuracy() {
        #expect(ShortAnswerScoring.relaxedMatch(prediction: "104", target: "100"))
        #expect(!ShortAnswerScoring.relaxedMatch(prediction: "106", target: "100"))
        #expect(ShortAnswerScoring.relaxedMatch(prediction: "51%", target: "0.5"))
        #expect(ShortAnswerScoring.relaxedMatch(prediction: "Yes", target: "yes"))
        #expect(!ShortAnswerScoring.relaxedMatch(prediction: "0.01", target: "0"))  // a zero target needs the same text
    }

    @Test func gqaAndOCRBench() {
        #expect(ShortAnswerScoring.gqaPrediction("Left..") == "left")
        #expect(ShortAnswerScoring.ocrBenchMatch(prediction: "The sign says STOP now", answer: "stop", isHandwrittenMath: false))
        #expect(ShortAnswerScoring.ocrBenchMatch(prediction: "x ^ 2", answer: "x^2", isHandwrittenMath: true))
        #expect(!ShortAnswerScoring.ocrBenchMatch(prediction: "X^2", answer: "x^2", isHandwrittenMath: true))
    }
}

@Suite struct ScoringFilesTests {
    @Test func popeMissingAnswerIsWrongAndCounted() throws {
        let scratch = try ScoringScratch()
        let questions = try scratch.write("questions.jsonl", """
            {"question_id": 1, "category": "random"}
            {"question_id": 2, "category": "random"}
            """)
        try scratch.write("coco/coco_pope_random.json", "{\"label\": \"yes\"}\n{\"label\": \"no\"}\n")
        let report = try Scoring.score(.pope, questions: questions, answers: try scratch.answers([("2", "No.")]),
                                       annotations: scratch.folder.appendingPathComponent("coco"))
        // Question 1 unanswered: a false negative. TP 0 -> F1 0; accuracy 1/2.
        #expect(report.unanswered == 1 && report.unansweredIds == ["1"])
        #expect(report.metrics["random.accuracy"] == 0.5 && report.score == 0)
    }

    @Test func mmbenchCircularWithOneRotationWrong() throws {
        let scratch = try ScoringScratch()
        let questions = try scratch.write("mmbench.tsv", """
            index\tquestion\tA\tB\tanswer\tcategory
            1\t"Which, with a ""quote""?"\tcat\tdog\tA\tanimals
            1000001\tWhich?\tdog\tcat\tB\tanimals
            2\tWhere?\tNone\there\tB\tplaces
            1000002\tWhere?\there\tthere\tA\tplaces
            """)
        let answers = try scratch.answers([("1", "A"), ("1000001", "A"), ("2", "here"), ("1000002", "A")])
        let report = try Scoring.score(.mmbench, questions: questions, answers: answers, annotations: nil)
        // Question 1's rotation is wrong; question 2 ("None" is no option, so "here" names B) and its rotation are right.
        #expect(report.score == 50 && report.metrics["single_pass_accuracy"] == 100)
        #expect(report.metrics["category.animals"] == 0 && report.metrics["category.places"] == 100)
    }

    @Test func mmeAccuracyAndAccuracyPlus() throws {
        let scratch = try ScoringScratch()
        try scratch.write("gt/eval_tool/Your_Results/color.txt", """
            1.jpg\tIs it red? Please answer yes or no.\tYes
            1.jpg\tIs it blue? Please answer yes or no.\tNo
            2.jpg\tIs it green? Please answer yes or no.\tYes
            2.jpg\tIs it pink? Please answer yes or no.\tNo
            """)
        try scratch.write("gt/eval_tool/Your_Results/code_reasoning.txt", "9.png\tDoes it print 1? Please answer yes or no.\tyes\n")
        // LLaVA's MME ids are shared by an image's two questions: answers are told apart by their prompt.
        let questions = try scratch.write("llava_mme.jsonl", """
            {"question_id": "color/1.jpg", "text": "Is it red?\\nAnswer the question using a single word or phrase.", "category": "color"}
            {"question_id": "color/1.jpg", "text": "Is it blue? Please answer yes or no.", "category": "color"}
            {"question_id": "color/2.jpg", "text": "Is it green?", "category": "color"}
            {"question_id": "code_reasoning/9.png", "text": "Does it print 1?", "category": "code_reasoning"}
            """)
        let answerLines = [("color/1.jpg", "Is it red?\\nAnswer the question using a single word or phrase.", "Yes"),
                           ("color/1.jpg", "Is it blue? Please answer yes or no.", "no"),
                           ("color/2.jpg", "Is it green?", "No"), ("code_reasoning/9.png", "Does it print 1?", "yes")]
        let answers = try scratch.write("answers.jsonl", answerLines.map { "{\"question_id\": \"\($0.0)\", \"prompt\": \"\($0.1)\", \"text\": \"\($0.2)\"}" }.joined(separator: "\n"))
        let report = try Scoring.score(.mme, questions: questions, answers: answers, annotations: scratch.folder.appendingPathComponent("gt"))
        // color: 2 of 4 right (acc 50), image 1 both right, image 2 not (acc+ 50): 100. The
        // "Is it pink?" line has no question: unanswered, wrong.
        #expect(report.metrics["color.acc"] == 50 && report.metrics["color.acc_plus"] == 50)
        #expect(report.score == 100 && report.metrics["cognition"] == 200 && report.metrics["total"] == 300)
        #expect(report.unanswered == 1 && report.questions == 5)
    }

    @Test func vqaGQASEEDAndOCRBenchFromFiles() throws {
        let scratch = try ScoringScratch()
        let questions = try scratch.write("q.jsonl", "{\"question_id\": 7}\n{\"question_id\": 8}\n")
        let textVQA = try scratch.write("textvqa.json", """
            {"data": [{"question_id": 7, "answers": ["two","2","2","2","2","2","2","2","2","2"]}, {"question_id": 8, "answers": ["x","x","x","x","x","x","x","x","x","x"]}]}
            """)
        let vqa = try Scoring.score(.textvqa, questions: questions, answers: try scratch.answers([("7", "Two")]), annotations: textVQA)
        #expect(vqa.score == 50 && vqa.unanswered == 1)
        let gqa = try scratch.write("gqa.json", "{\"7\": {\"answer\": \"left\"}, \"8\": {\"answer\": \"yes\"}}")
        #expect(try Scoring.score(.gqa, questions: questions, answers: try scratch.answers([("7", "Left."), ("8", "no")]), annotations: gqa).score == 50)
        let seed = try scratch.write("seed.json", """
            {"questions": [{"question_id": "7", "answer": "A", "data_type": "image", "question_type_id": 1}, {"question_id": "8", "answer": "B", "data_type": "video", "question_type_id": 2}]}
            """)
        let seedReport = try Scoring.score(.seed, questions: questions, answers: try scratch.answers([("7", "A"), ("8", "B")]), annotations: seed)
        #expect(seedReport.score == 100 && seedReport.questions == 1 && seedReport.metrics["category.1"] == 100)
        let ocr = try scratch.write("ocr.json", """
            [{"id": 7, "answers": ["Stop"], "type": "Scene Text"}, {"id": 8, "answers": "x^2", "dataset_name": "HME100k", "type": "HME"}]
            """)
        let ocrReport = try Scoring.score(.ocrbench, questions: questions, answers: try scratch.answers([("7", "STOP sign"), ("8", "x ^ 2")]), annotations: ocr)
        #expect(ocrReport.score == 2 && ocrReport.metrics["category.HME"] == 1)
    }

    @Test func badFilesAreNamedWithFileAndLine() throws {
        let scratch = try ScoringScratch()
        let questions = try scratch.write("q.jsonl", "{\"question_id\": 1, \"category\": \"random\"}\n{\"question_id\": 2}\n")
        try scratch.write("coco/coco_pope_random.json", "{\"label\": \"yes\"}\n")
        #expect(throws: EvaluationFileError(file: questions.path, line: 2, reason: "no string \"category\"")) {
            try Scoring.score(.pope, questions: questions, answers: try scratch.answers([]), annotations: scratch.folder.appendingPathComponent("coco"))
        }
        let good = try scratch.write("good.jsonl", "{\"question_id\": 1, \"category\": \"random\"}\n")
        do {
            _ = try Scoring.score(.pope, questions: good, answers: try scratch.answers([("99", "yes")]), annotations: scratch.folder.appendingPathComponent("coco"))
            Issue.record("an answer to an unknown question was accepted")
        } catch { #expect("\(error)".contains("question id 99")) }
        let table = try scratch.write("bad.tsv", "index\tA\tanswer\n1\tx\n")
        #expect(throws: EvaluationFileError(file: table.path, line: 2, reason: "2 fields where the header has 3")) {
            try Scoring.score(.mmbench, questions: table, answers: try scratch.answers([]), annotations: nil)
        }
    }
}
