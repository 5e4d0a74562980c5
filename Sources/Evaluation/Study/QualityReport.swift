import Engine
import Foundation
import Vision

/// What one answers file of the study says: its score and cost (`SettingResult`), accuracy per
/// question group, and per drop the share of the image tokens kept and of the question's object
/// patches kept (recall).
public struct StudySettingResult: Codable, Equatable, Sendable {
    public var result: SettingResult
    /// Group name → accuracy (percent), weighted by questions.
    public var groupAccuracy: [String: Double]
    /// Per drop: mean kept image tokens ÷ image tokens.
    public var keptFraction: [Double]
    /// Per drop: mean share of the question's object patches kept.
    public var recall: [Double]

    public var accuracy: Double { result.score }
}

/// A training run's cost, from its training_log.jsonl.
public struct TrainingRunSummary: Codable, Equatable, Sendable {
    public var steps: Int
    public var seconds: Double
    /// The median step's seconds: robust to steps slowed by other work on the machine.
    public var medianStepSeconds: Double
    public var tokensPerSecond: Double
    /// Mean loss of the last 10% of steps.
    public var finalLoss: Double

    public init(log: URL) throws {
        struct Line: Decodable { let step: Int; let loss: Double; let seconds: Double; let tokens: Int }
        let lines = try readJSONLines(Line.self, from: log)
        guard !lines.isEmpty else { throw EvaluationFileError(file: log.path, reason: "no steps logged") }
        steps = lines.map(\.step).max() ?? 0
        seconds = lines.reduce(0) { $0 + $1.seconds }
        let sorted = lines.map(\.seconds).sorted()
        medianStepSeconds = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        tokensPerSecond = Double(lines.reduce(0) { $0 + $1.tokens }) / max(seconds, 1e-9)
        let tail = lines.suffix(max(1, lines.count / 10))
        finalLoss = tail.reduce(0) { $0 + $1.loss } / Double(tail.count)
    }
}

/// The held-out split of a generated data set, as `pdrop data` writes it.
public struct StudyData: Sendable {
    public let directory: URL
    public var questions: URL { directory.appendingPathComponent("questions.jsonl") }
    public var answers: URL { directory.appendingPathComponent("answers.json") }
    public var patches: URL { directory.appendingPathComponent("patches.jsonl") }
    public var images: URL { directory.appendingPathComponent("images") }

    public init(directory: URL) { self.directory = directory }

    /// answers.json cut down to `questions`, as a temporary file (GQA's rule counts every
    /// question of its annotations, answered or not).
    public func annotations(restrictedTo questions: Set<QuestionID>) throws -> URL {
        guard let table = try JSONSerialization.jsonObject(with: Data(contentsOf: answers)) as? [String: Any] else {
            throw EvaluationFileError(file: answers.path, reason: "not an object of question id → {answer, type, question}")
        }
        let kept = table.filter { key, _ in questions.contains(Int(key).map { .integer($0) } ?? .string(key)) }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("study-annotations-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: kept, options: [.sortedKeys]).write(to: file)
        return file
    }

    /// Question id → (category, answer, question text) from answers.json.
    public func references() throws -> [QuestionID: (category: String, answer: String, question: String)] {
        guard let table = try JSONSerialization.jsonObject(with: Data(contentsOf: answers)) as? [String: [String: Any]] else {
            throw EvaluationFileError(file: answers.path, reason: "not an object of question id → {answer, type, question}")
        }
        var references: [QuestionID: (String, String, String)] = [:]
        for (key, value) in table {
            let id: QuestionID = Int(key).map { .integer($0) } ?? .string(key)
            references[id] = (value["type"] as? String ?? "", value["answer"] as? String ?? "", value["question"] as? String ?? "")
        }
        return references
    }
}

public enum QualityReport {
    /// Scores one answers file against the held-out split.
    /// Only the questions the file answers count (a study may answer a subset of the split).
    public static func settingResult(answers: URL, data: StudyData, imageTokens: Int) throws -> StudySettingResult {
        let answered = Set(try readAnswers(from: answers).map(\.questionId))
        let annotations = try data.annotations(restrictedTo: answered)
        defer { try? FileManager.default.removeItem(at: annotations) }
        let score = try Scoring.score(.gqa, questions: annotations, answers: answers, annotations: nil)
        let result = try EvaluationReport.result(answers: answers, score: score)
        let references = try data.references().filter { answered.contains($0.key) }
        var groupAccuracy: [String: Double] = [:]
        for group in TaskQuestionGroups.groups {
            var correct = 0.0, count = 0.0
            for category in group.categories {
                let questions = Double(references.values.filter { $0.category == category }.count)
                guard questions > 0, let percent = score.metrics["category.\(category)"] else { continue }
                correct += percent * questions
                count += questions
            }
            if count > 0 { groupAccuracy[group.name] = correct / count }
        }
        let records = try readAnswers(from: answers)
        var keptSums: [Double] = []
        for record in records {
            guard let drops = KeptTokenRecall.keptImageTokens(record) else { continue }
            if keptSums.isEmpty { keptSums = Array(repeating: 0, count: drops.count) }
            for (index, kept) in drops.enumerated() where index < keptSums.count { keptSums[index] += Double(kept.count) }
        }
        let keptFraction = keptSums.map { $0 / Double(max(records.count, 1)) / Double(imageTokens) }
        let recall = keptSums.isEmpty ? [] : try KeptTokenRecall.meanRecall(answers: answers, patches: data.patches).perDrop
        return StudySettingResult(result: result, groupAccuracy: groupAccuracy, keptFraction: keptFraction, recall: recall)
    }

    /// What answering without the image scores: each question given its type's most frequent
    /// answer among `questions` of the split (all by default; overall and per group, percent):
    /// about what a model that does not look at the image reaches at best.
    public static func priorBaseline(data: StudyData, questions: Set<QuestionID>? = nil) throws -> (accuracy: Double, groups: [String: Double]) {
        var answersByCategory: [String: [String: Int]] = [:]
        for (id, reference) in try data.references() where questions?.contains(id) ?? true { answersByCategory[reference.category, default: [:]][reference.answer, default: 0] += 1 }
        func accuracy(_ categories: [String]) -> Double? {
            let tallies = categories.compactMap { answersByCategory[$0] }
            let total = tallies.reduce(0) { $0 + $1.values.reduce(0, +) }
            guard total > 0 else { return nil }
            return 100 * Double(tallies.reduce(0) { $0 + ($1.values.max() ?? 0) }) / Double(total)
        }
        var groups: [String: Double] = [:]
        for group in TaskQuestionGroups.groups { groups[group.name] = accuracy(group.categories) }
        return (accuracy(Array(answersByCategory.keys)) ?? 0, groups)
    }

    /// The categories present in the split, in the groups' order, then any others.
    static func categories(in results: [StudySettingResult]) -> [String] {
        let present = Set(results.flatMap { $0.result.metrics.keys.filter { $0.hasPrefix("category.") }.map { String($0.dropFirst(9)) } })
        let grouped = TaskQuestionGroups.groups.flatMap(\.categories).filter(present.contains)
        return grouped + present.subtracting(grouped).sorted()
    }
}

/// Everything docs/QUALITY.md shows, measured by `pdrop eval study`.
public struct QualityFindings: Codable, Sendable {
    public var modelDescription: String
    /// Answering each question with its type's most frequent answer: accuracy and per group.
    public var priorAccuracy: Double
    public var priorGroupAccuracy: [String: Double]
    public var questionCount: Int
    public var singleDropQuestionCount: Int
    public var decoderLayers: Int
    public var imageTokens: Int
    /// All cost settings of the model trained with PyramidDrop, in `QualityStudy.costSettings` order.
    public var cost: [StudySettingResult]
    /// Single-drop settings, in `QualityStudy.singleDropSettings` order, with the no-reduction
    /// result on the same questions.
    public var singleDrop: [StudySettingResult]
    public var singleDropBaseline: StudySettingResult
    /// Part 4: the run trained with PyramidDrop and the one trained without, each under none and
    /// PyramidDrop's default.
    public var pdropModel: [StudySettingResult]
    public var plainModel: [StudySettingResult]
    public var trainingWithPyramidDrop: TrainingRunSummary
    public var trainingWithout: TrainingRunSummary
    /// Picture file names (relative to the markdown) with their question, answer and the answers given.
    public var pictures: [StudyPicture]

    public init(
        modelDescription: String, priorAccuracy: Double, priorGroupAccuracy: [String: Double], questionCount: Int, singleDropQuestionCount: Int, decoderLayers: Int, imageTokens: Int,
        cost: [StudySettingResult], singleDrop: [StudySettingResult], singleDropBaseline: StudySettingResult,
        pdropModel: [StudySettingResult], plainModel: [StudySettingResult], trainingWithPyramidDrop: TrainingRunSummary, trainingWithout: TrainingRunSummary,
        pictures: [StudyPicture]
    ) {
        self.modelDescription = modelDescription
        self.priorAccuracy = priorAccuracy
        self.priorGroupAccuracy = priorGroupAccuracy
        self.questionCount = questionCount
        self.singleDropQuestionCount = singleDropQuestionCount
        self.decoderLayers = decoderLayers
        self.imageTokens = imageTokens
        self.cost = cost
        self.singleDrop = singleDrop
        self.singleDropBaseline = singleDropBaseline
        self.pdropModel = pdropModel
        self.plainModel = plainModel
        self.trainingWithPyramidDrop = trainingWithPyramidDrop
        self.trainingWithout = trainingWithout
        self.pictures = pictures
    }

    func cost(_ name: String) -> StudySettingResult? { cost.first { $0.result.setting == name } }
}

public struct StudyPicture: Codable, Equatable, Sendable {
    public var file: String
    public var category: String
    public var question: String
    public var answer: String
    /// Setting name → the model's answer.
    public var given: [String: String]
    public var recall: [Double]

    public init(file: String, category: String, question: String, answer: String, given: [String: String], recall: [Double]) {
        self.file = file
        self.category = category
        self.question = question
        self.answer = answer
        self.given = given
        self.recall = recall
    }
}

// MARK: - Markdown and figures

extension QualityFindings {
    /// Accuracy against paper image GFLOPs, one line per method, each from the no-reduction point.
    public func costPlot() -> LinePlot {
        let baseline = cost("none")
        let methods = ["pdrop", "fastv", "random"]
        let series = methods.enumerated().map { index, method -> PlotSeries in
            let points = ([baseline].compactMap { $0 } + cost.filter { $0.result.method == method })
                .map { PlotPoint(x: $0.result.paperImageTeraFLOPs * 1000, y: $0.accuracy) }
                .sorted { $0.x > $1.x }
            return PlotSeries(name: method, color: PlotColor.palette[index % PlotColor.palette.count], points: points)
        }
        return LinePlot(title: "held-out accuracy against image GFLOPs", xLabel: "paper image GFLOPs", yLabel: "accuracy (%)", series: series)
    }

    /// Accuracy after one drop at each layer, one line per keep ratio, and the no-reduction level.
    public func singleDropPlot() -> LinePlot {
        let layers = Array(1..<decoderLayers)
        var series = QualityStudy.singleDropKeepPercents.enumerated().map { index, percent -> PlotSeries in
            PlotSeries(
                name: "drop \(100 - percent)%", color: PlotColor.palette[index % PlotColor.palette.count],
                points: layers.compactMap { layer in
                    singleDrop.first { $0.result.setting == QualityStudy.singleDropName(layer: layer, keepPercent: percent) }
                        .map { PlotPoint(x: Double(layer), y: $0.accuracy) }
                })
        }
        series.append(PlotSeries(
            name: "none", color: PlotColor.black,
            points: [layers.first, layers.last].compactMap { $0 }.map { PlotPoint(x: Double($0), y: singleDropBaseline.accuracy) }))
        return LinePlot(title: "one drop after layer K: accuracy", xLabel: "layer K", yLabel: "accuracy (%)", series: series)
    }

    public func markdown(costPlotFile: String, singleDropPlotFile: String, command: String) -> String {
        var lines: [String] = []
        func line(_ text: String = "") { lines.append(text) }
        func percent(_ value: Double) -> String { String(format: "%.1f", value) }
        func list(_ values: [Double]) -> String { values.map { String(format: "%.2f", $0) }.joined(separator: " / ") }
        let groupNames = TaskQuestionGroups.groups.map(\.name)

        line("# Does PyramidDrop keep the answers right? The paper's study in miniature")
        line()
        line("Generated by `\(command)` (`make quality`); every figure below comes from the answers files that command writes. ")
        line("Model: \(modelDescription). Held-out: \(questionCount) questions on images of seeds never trained on (\(singleDropQuestionCount) of them, every n-th, for the single-drop sweep). Accuracy: GQA's exact-match rule (`pdrop eval score --benchmark gqa`), in percent. Costs are means over the answers; prefill seconds measured in the same run for every setting (each question answered under all settings in turn), so their ratios are fair even on a shared machine.")
        line()

        // Verdicts first.
        line("## The paper's hypotheses, here")
        line()
        for verdict in hypotheses() { line("- \(verdict)") }
        line()

        // 1.
        line("## 1. Redundancy by depth (the paper's Figure 1)")
        line()
        line("One drop after layer K, keeping the top 50% / 25% / 10% of the image tokens by the last instruction token's attention (PyramidDrop's ranking), no further drops. No reduction on the same questions: \(percent(singleDropBaseline.accuracy))%.")
        line()
        line("| layer K | " + QualityStudy.singleDropKeepPercents.map { "drop \(100 - $0)%: accuracy | recall" }.joined(separator: " | ") + " |")
        line("| ---: | " + QualityStudy.singleDropKeepPercents.map { _ in "---: | ---:" }.joined(separator: " | ") + " |")
        for layer in 1..<decoderLayers {
            let cells = QualityStudy.singleDropKeepPercents.map { keep -> String in
                guard let result = singleDrop.first(where: { $0.result.setting == QualityStudy.singleDropName(layer: layer, keepPercent: keep) }) else { return "– | –" }
                return percent(result.accuracy) + " | " + (result.recall.first.map { String(format: "%.2f", $0) } ?? "–")
            }
            line("| \(layer) | " + cells.joined(separator: " | ") + " |")
        }
        line()
        line("![accuracy after one drop, by layer](\(singleDropPlotFile))")
        line()

        // 2.
        line("## 2. Accuracy against cost")
        line()
        line("none; PyramidDrop (`pdrop`: its default schedule, \(decoderLayers / 4 > 0 ? "drops after layers \(stride(from: decoderLayers / 4, to: decoderLayers, by: max(decoderLayers / 4, 1)).map(String.init).joined(separator: ", "))" : "four stages"), keep ratio λ = 0.5 per stage), FastV (`fastv`: K = 2, R = 50%) and random dropping at PyramidDrop's default layers and counts (`random`, seed \(QualityStudy.randomSeed)); then each at budgets of \(QualityStudy.budgetPercents.map { "\($0)%" }.joined(separator: ", ")) of the \(imageTokens) image tokens on average per layer (`-bNN`: PyramidDrop's and random's schedules solved by `--budget-tokens`: λ over the equal stages, or over the paper's low-budget layers where equal stages cannot reach the budget; FastV's ratio solved at K = 2, or K = 1 where K = 2 cannot reach it). The schedules each setting ran are in part 3's table.")
        line()
        line("| setting | image tokens / layer | paper image GFLOPs | prefill ms | speedup | accuracy | " + groupNames.joined(separator: " | ") + " |")
        line("| --- | ---: | ---: | ---: | ---: | ---: | " + groupNames.map { _ in "---:" }.joined(separator: " | ") + " |")
        for entry in cost {
            let r = entry.result
            line(String(format: "| %@ | %.1f (%.0f%%) | %.3f | %.2f | %@ | **%.1f** | ", r.setting, r.averageImageTokensPerLayer,
                        100 * r.averageImageTokensPerLayer / Double(imageTokens), r.paperImageTeraFLOPs * 1000, r.prefillSeconds * 1000,
                        r.prefillSpeedup.map { String(format: "%.2f×", $0) } ?? "–", entry.accuracy)
                 + groupNames.map { entry.groupAccuracy[$0].map(percent) ?? "–" }.joined(separator: " | ") + " |")
        }
        line("| *prior: each type's most frequent answer, no image* | – | – | – | – | *\(percent(priorAccuracy))* | " + groupNames.map { priorGroupAccuracy[$0].map(percent) ?? "–" }.joined(separator: " | ") + " |")
        line()
        line("![accuracy against paper image GFLOPs](\(costPlotFile))")
        line()
        let categories = QualityReport.categories(in: cost)
        line("By question type (accuracy, %):")
        line()
        line("| setting | " + categories.joined(separator: " | ") + " |")
        line("| --- | " + categories.map { _ in "---:" }.joined(separator: " | ") + " |")
        for entry in cost {
            line("| \(entry.result.setting) | " + categories.map { entry.result.metrics["category.\($0)"].map(percent) ?? "–" }.joined(separator: " | ") + " |")
        }
        line()

        // 3.
        line("## 3. Does the ranking find the right patches?")
        line()
        line("For each drop, the mean share of the question's object patches (the 8 px patches its objects or cells cover, from the drawing) whose tokens survive, beside the share of all image tokens kept. A ranking that finds the objects keeps more of them than it keeps overall; random keeps them in proportion.")
        line()
        line("| setting | reduction | kept share per drop | object recall per drop |")
        line("| --- | --- | --- | --- |")
        for entry in cost where !entry.recall.isEmpty {
            line("| \(entry.result.setting) | \(entry.result.reduction) | \(list(entry.keptFraction)) | \(list(entry.recall)) |")
        }
        line()

        // 4.
        line("## 4. Training with PyramidDrop")
        line()
        line("From the same starting weights, with the same data, order, steps and optimizer settings, trained with PyramidDrop (its default schedule) and without (`pdrop train --stop-at-step`: both stopped at the same step of the same schedule); each then evaluated without reduction and with PyramidDrop. Wall time: the sum of the steps' seconds in each run's training_log.jsonl ; runs that share a machine with each other or with other work give an approximate ratio (`pdrop bench --train` times both kinds of step in one run).")
        line()
        line("| trained | steps | wall time | median step | tokens / s | final loss | accuracy, no reduction | accuracy, PyramidDrop |")
        line("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        let withPDrop = (trainingWithPyramidDrop, pdropModel.first { $0.result.setting == "none" }, pdropModel.first { $0.result.setting == "pdrop" })
        let without = (trainingWithout, plainModel.first { $0.result.setting == "none" }, plainModel.first { $0.result.setting == "pdrop" })
        for (name, row) in [("with PyramidDrop", withPDrop), ("without", without)] {
            line(String(format: "| %@ | %d | %.0f s | %.2f s | %.0f | %.3f | %@ | %@ |", name, row.0.steps, row.0.seconds, row.0.medianStepSeconds, row.0.tokensPerSecond, row.0.finalLoss,
                        row.1.map { percent($0.accuracy) } ?? "–", row.2.map { percent($0.accuracy) } ?? "–"))
        }
        line()
        line(String(format: "Wall-time ratio (with ÷ without): %.2f; median step-time ratio: %.2f.", trainingWithPyramidDrop.seconds / max(trainingWithout.seconds, 1e-9),
                    trainingWithPyramidDrop.medianStepSeconds / max(trainingWithout.medianStepSeconds, 1e-9)))
        line()

        // 5.
        line("## 5. What PyramidDrop kept")
        line()
        line("The first held-out question of each type under PyramidDrop's default schedule: the image, then the tokens left after each drop (dropped patches dimmed); the question's objects outlined in magenta.")
        line()
        for picture in pictures {
            let answers = picture.given.keys.sorted().map { "\($0): \(picture.given[$0]!)" }.joined(separator: ", ")
            line("**\(picture.category)**: \(picture.question) Answer: **\(picture.answer)**; given \(answers); object recall per drop \(list(picture.recall)).")
            line()
            line("![\(picture.category)](\(picture.file))")
            line()
        }
        return lines.joined(separator: "\n")
    }

    /// The paper's four claims, each checked against the numbers above and said plainly.
    public func hypotheses() -> [String] {
        var verdicts: [String] = []
        if let none = cost("none") {
            let margin = none.accuracy - priorAccuracy
            verdicts.append(String(
                format: "**Does the model use the image at all? %@** Without reduction it scores %.1f%%; answering each question with its type's most frequent answer, without the image, scores %.1f%% (%+.1f points). %@",
                margin >= 10 ? "Yes." : "Barely, or not:", none.accuracy, priorAccuracy, margin,
                margin >= 10 ? "" : "Differences between reductions below are then differences in noise around the prior, not tests of the paper's claims."))
        }
        if let none = cost("none"), let pdrop = cost("pdrop") {
            let gap = pdrop.accuracy - none.accuracy
            verdicts.append(String(
                format: "**PyramidDrop at its default schedule within about 1 point of no reduction: %@** (%.1f%% against %.1f%%, %+.1f points, at %.0f%% of the image tokens per layer).",
                abs(gap) <= 1.0 || gap > 0 ? "holds" : "does not hold", pdrop.accuracy, none.accuracy, gap,
                100 * pdrop.result.averageImageTokensPerLayer / Double(imageTokens)))
        }
        let gaps = QualityStudy.budgetPercents.compactMap { percent -> (Int, Double)? in
            guard let p = cost("pdrop-b\(percent)"), let f = cost("fastv-b\(percent)") else { return nil }
            return (percent, p.accuracy - f.accuracy)
        }
        if !gaps.isEmpty {
            let above = gaps.allSatisfy { $0.1 > 0 }
            let growing = zip(gaps, gaps.dropFirst()).allSatisfy { $1.1 >= $0.1 }
            let text = gaps.map { String(format: "%d%%: %+.1f", $0.0, $0.1) }.joined(separator: ", ")
            verdicts.append("**PyramidDrop above FastV at every matched budget: \(above ? "holds" : "does not hold")**; **the gap grows as the budget shrinks: \(growing ? "holds" : "does not hold")** (PyramidDrop − FastV, points, by budget: \(text)).")
        }
        let randomGaps = QualityStudy.budgetPercents.compactMap { percent -> (Int, Double, Double)? in
            guard let p = cost("pdrop-b\(percent)"), let f = cost("fastv-b\(percent)"), let r = cost("random-b\(percent)") else { return nil }
            return (percent, p.accuracy - r.accuracy, f.accuracy - r.accuracy)
        }
        if !randomGaps.isEmpty {
            let far = randomGaps.allSatisfy { $0.1 >= 5 && $0.2 >= 5 }
            let text = randomGaps.map { String(format: "%d%%: %+.1f / %+.1f", $0.0, $0.1, $0.2) }.joined(separator: ", ")
            verdicts.append("**Both far above random dropping (≥ 5 points at every budget): \(far ? "holds" : "does not hold")** (PyramidDrop − random / FastV − random, points: \(text)).")
        }
        if let withNone = pdropModel.first(where: { $0.result.setting == "none" }), let withoutNone = plainModel.first(where: { $0.result.setting == "none" }) {
            let ratio = trainingWithPyramidDrop.medianStepSeconds / max(trainingWithout.medianStepSeconds, 1e-9)
            let asAccurate = withNone.accuracy >= withoutNone.accuracy - 1
            verdicts.append(String(
                format: "**Training with PyramidDrop as accurate at a clearly lower wall time: %@** (%.1f%% against %.1f%% without reduction at test time; median step time ×%.2f).",
                asAccurate && ratio < 0.9 ? "holds" : (asAccurate ? "as accurate, but the time saved is small" : "does not hold"),
                withNone.accuracy, withoutNone.accuracy, ratio))
        }
        return verdicts
    }
}
