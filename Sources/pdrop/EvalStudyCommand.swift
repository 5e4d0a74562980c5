import FileAccess
import ArgumentParser
import Engine
import Evaluation
import Foundation
import Models
import Vision

/// docs/QUALITY.md: the paper's experiments on a model trained here on generated data.
struct EvalStudyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "study",
        abstract: "The paper's study on a model trained on `pdrop data` tasks: redundancy by depth, accuracy against cost, recall, training with and without PyramidDrop.",
        discussion: """
            Answers the held-out split (--data, written by `pdrop data`) with --model under no reduction, \
            PyramidDrop, FastV and random dropping at their defaults and at matched budgets, and under one drop at \
            each layer; answers it with --plain-model (trained without PyramidDrop) under none and PyramidDrop; \
            scores everything with GQA's rule; writes the Markdown report, its figures and a JSON of every number. \
            Answers go to --answers as they are made, so a rerun resumes.
            """)

    @Option(help: "Checkpoint trained with PyramidDrop: parts 1-3 and 5.")
    var model: String

    @Option(help: "Part 4, training with PyramidDrop: a `pdrop train` output (its training_log.jsonl is read); default --model.")
    var pdropModel: String?

    @Option(help: "Part 4: the same training (data, order, steps, seed) without PyramidDrop.")
    var plainModel: String

    @Option(help: "Held-out data set folder written by `pdrop data` (questions.jsonl, answers.json, patches.jsonl, images/).")
    var data: String

    @Option(help: "Folder for the answers files.")
    var answers: String = ".build/quality"

    @Option(help: "The Markdown report to write.")
    var output: String = "docs/QUALITY.md"

    @Option(help: "Folder for the report's figures (relative links are made from the report's folder).")
    var figures: String = "docs/quality"

    @Option(help: "Questions of the study (every n-th of the held-out split; default all).")
    var questions: Int?

    @Option(help: "Questions of the single-drop sweep (every n-th of the study's questions).")
    var singleDropQuestions: Int = 300

    @Option(help: "Conversation template the models were trained with.\(templateDefaultHelp)")
    var template: String?

    func validate() throws {
        if let template, ConversationTemplate.named(template) == nil { throw ValidationError("--template '\(template)' is unknown") }
        if singleDropQuestions < 1 { throw ValidationError("--single-drop-questions must be at least 1") }
        if let questions, questions < 1 { throw ValidationError("--questions must be at least 1") }
    }

    func run() throws {
        try failing {
            let data = StudyData(directory: URL(fileURLWithPath: self.data))
            let all = try loadQuestions(file: data.questions, imagesDirectory: data.images)
            let questions = QualityStudy.everyNth(all, count: self.questions ?? all.count)
            let answersDirectory = URL(fileURLWithPath: answers)
            try FileManager.default.createDirectory(at: answersDirectory, withIntermediateDirectories: true)
            let template = template.flatMap(ConversationTemplate.named)

            let mainSession = try withFlagNames { try InferenceSession(directory: URL(fileURLWithPath: model), imageOptions: ImageProcessingOptions(), template: template) }
            guard mainSession.visionLanguageModel != nil else { throw PipelineError.notAVisionLanguageModel(directory: model) }
            guard let vision = mainSession.loaded.llava else {
                throw PipelineError.needsLlava(directory: model, family: mainSession.loaded.family.name, purpose: "the study (square patch grids)")
            }
            let imageTokens = vision.tokensPerTile, layers = mainSession.decoder.shape.layers
            let costSettings = try QualityStudy.costSettings(imageTokens: imageTokens)
            let singleSettings = try QualityStudy.comparisonSettings().prefix(1) + QualityStudy.singleDropSettings(decoderLayers: layers)
            let singleQuestions = QualityStudy.everyNth(questions, count: singleDropQuestions)
            func files(_ prefix: String, _ settings: [EvaluationSetting]) -> [URL] {
                settings.map { answersDirectory.appendingPathComponent("\(prefix).\($0.name).jsonl") }
            }
            try answer("accuracy against cost", session: mainSession, settings: costSettings, files: files("main", costSettings), questions: questions)
            try answer("one drop by layer", session: mainSession, settings: Array(singleSettings), files: files("single", Array(singleSettings)), questions: singleQuestions)
            let comparison = try QualityStudy.comparisonSettings()
            let pdropModel = self.pdropModel ?? model
            let pdropSession = pdropModel == model
                ? mainSession : try withFlagNames { try InferenceSession(directory: URL(fileURLWithPath: pdropModel), imageOptions: ImageProcessingOptions(), template: template) }
            try answer("trained with PyramidDrop", session: pdropSession, settings: comparison, files: files("trained-pdrop", comparison), questions: questions)
            let plainSession = try withFlagNames { try InferenceSession(directory: URL(fileURLWithPath: plainModel), imageOptions: ImageProcessingOptions(), template: template) }
            try answer("trained without PyramidDrop", session: plainSession, settings: comparison, files: files("trained-plain", comparison), questions: questions)

            log("scoring")
            func results(_ prefix: String, _ settings: [EvaluationSetting]) throws -> [StudySettingResult] {
                let scored = try zip(settings, files(prefix, settings)).map { _, file in
                    try QualityReport.settingResult(answers: file, data: data, imageTokens: imageTokens)
                }
                // Speedups against the no-reduction setting of the same run.
                let ordered = EvaluationReport.ordered(scored.map(\.result))
                return scored.map { entry in
                    var entry = entry
                    entry.result.prefillSpeedup = ordered.first { $0.setting == entry.result.setting }?.prefillSpeedup
                    return entry
                }
            }
            let cost = try results("main", costSettings)
            let single = try results("single", Array(singleSettings))
            let figuresDirectory = URL(fileURLWithPath: figures)
            try FileManager.default.createDirectory(at: figuresDirectory, withIntermediateDirectories: true)
            let reportDirectory = URL(fileURLWithPath: output).deletingLastPathComponent().standardizedFileURL
            let link = { (name: String) in
                relativePath(of: figuresDirectory.appendingPathComponent(name).standardizedFileURL, from: reportDirectory)
            }
            let prior = try QualityReport.priorBaseline(data: data, questions: Set(questions.map(\.id)))
            let findings = QualityFindings(
                modelDescription: describeModel(mainSession, directory: model), priorAccuracy: prior.accuracy, priorGroupAccuracy: prior.groups,
                questionCount: questions.count, singleDropQuestionCount: singleQuestions.count, decoderLayers: layers, imageTokens: imageTokens,
                cost: cost, singleDrop: Array(single.dropFirst()), singleDropBaseline: single[0],
                pdropModel: try results("trained-pdrop", comparison), plainModel: try results("trained-plain", comparison),
                trainingWithPyramidDrop: try TrainingRunSummary(log: URL(fileURLWithPath: pdropModel).appendingPathComponent("training_log.jsonl")),
                trainingWithout: try TrainingRunSummary(log: URL(fileURLWithPath: plainModel).appendingPathComponent("training_log.jsonl")),
                pictures: try pictures(session: mainSession, data: data, questions: questions, figures: figuresDirectory, link: link))
            try PNGEncoder.write(findings.costPlot().render(), to: figuresDirectory.appendingPathComponent("accuracy-vs-flops.png"))
            try PNGEncoder.write(findings.singleDropPlot().render(), to: figuresDirectory.appendingPathComponent("single-drop-by-layer.png"))
            let markdown = findings.markdown(
                costPlotFile: link("accuracy-vs-flops.png"), singleDropPlotFile: link("single-drop-by-layer.png"),
                command: "pdrop eval study --model \(model) --pdrop-model \(pdropModel) --plain-model \(plainModel) --data \(self.data)")
            try Data(markdown.utf8).write(to: URL(fileURLWithPath: output))
            try encodeJSON(findings).write(to: figuresDirectory.appendingPathComponent("quality.json"))
            for verdict in findings.hypotheses() { print("- " + verdict) }
            log("wrote \(output), \(figures)/quality.json and the figures")
        }
    }

    /// Answers `questions` under `settings` into `files` with a progress line (resumes).
    func answer(_ title: String, session: InferenceSession, settings: [EvaluationSetting], files: [URL], questions: [BenchmarkQuestion]) throws {
        log("\(title): \(questions.count) questions × \(settings.count) settings")
        let run = try EvaluationRun(session: session, settings: settings, files: files, maxNewTokens: 4, modelId: session.directory.lastPathComponent)
        let progress = ProgressLine(unit: "question", total: questions.count, first: 0)
        let clock = ContinuousClock(), start = clock.now
        _ = try run.answer(questions) { done, _ in
            let seconds = (clock.now - start).inSeconds
            progress.update(position: done, seconds: seconds, detail: String(format: "%.2f s/question", seconds / Double(max(done, 1))))
        }
        progress.finishLine()
    }

    /// The first held-out question of each type under PyramidDrop's default, drawn with its objects outlined.
    func pictures(
        session: InferenceSession, data: StudyData, questions: [BenchmarkQuestion], figures: URL, link: (String) -> String
    ) throws -> [StudyPicture] {
        let references = try data.references()
        let answersFile = URL(fileURLWithPath: answers).appendingPathComponent("main.pdrop.jsonl")
        let noneFile = URL(fileURLWithPath: answers).appendingPathComponent("main.none.jsonl")
        let pdropAnswers = Dictionary(try readAnswers(from: answersFile).map { ($0.questionId, $0) }, uniquingKeysWith: { a, _ in a })
        let noneAnswers = Dictionary(try readAnswers(from: noneFile).map { ($0.questionId, $0) }, uniquingKeysWith: { a, _ in a })
        let patches = try KeptTokenRecall.objectPatches(data.patches)
        let grid = TokenGrid.square(Int(Double(session.loaded.llava?.tokensPerTile ?? 0).squareRoot()))
        var seen = Set<String>(), pictures: [StudyPicture] = []
        for question in questions {
            guard let reference = references[question.id], !seen.contains(reference.category), let answer = pdropAnswers[question.id],
                  case let .file(imageFile)? = question.image, let kept = KeptTokenRecall.keptImageTokens(answer)
            else { continue }
            seen.insert(reference.category)
            let objects = patches[question.id] ?? []
            let image = try ImageDecoder.decode(contentsOf: imageFile)
            let picture = KeptTokensPicture.enlarged(
                KeptTokensPicture.render(image: image, grid: grid, keptPerDrop: kept, outlined: objects), factor: 2)
            let name = "kept-\(reference.category).png"
            try PNGEncoder.write(picture, to: figures.appendingPathComponent(name))
            pictures.append(StudyPicture(
                file: link(name), category: reference.category, question: reference.question, answer: reference.answer,
                given: ["none": noneAnswers[question.id]?.text ?? "–", "pdrop": answer.text],
                recall: KeptTokenRecall.recall(kept: kept, objectPatches: objects) ?? []))
        }
        return pictures
    }

    func describeModel(_ session: InferenceSession, directory: String) -> String {
        let shape = session.decoder.shape
        return "`\(directory)`: a LLaMA decoder of \(shape.layers) layers (hidden \(shape.hidden), \(shape.heads) heads, \(shape.keyValueHeads) KV heads, vocabulary \(shape.vocabulary)) over \(session.loaded.llava?.tokensPerTile ?? 0) image tokens"
    }
}

/// `file`'s path relative to `directory` (both absolute and standardized).
func relativePath(of file: URL, from directory: URL) -> String {
    let fileParts = file.pathComponents, directoryParts = directory.pathComponents
    var common = 0
    while common < min(fileParts.count, directoryParts.count) && fileParts[common] == directoryParts[common] { common += 1 }
    return (Array(repeating: "..", count: directoryParts.count - common) + fileParts[common...]).joined(separator: "/")
}
