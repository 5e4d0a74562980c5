import ArgumentParser
import Engine
import Evaluation
import Foundation
import Models

#if canImport(Glibc)
import Glibc
#endif

/// Answers a benchmark's questions as LLaVA's evaluation scripts do, under one or several
/// reduction settings, into LLaVA answers files.
struct EvalRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Answer a benchmark (LLaVA's question jsonl, ScienceQA JSON or MMBench TSV) into answers files.",
        discussion: """
            Each question's text is the user turn (after its image), through the checkpoint's conversation \
            template, answered greedily. With --setting NAME:FLAGS (repeatable) every question is answered under \
            each setting, the image and vision tower running once per question, into one answers file per \
            setting (OUT.NAME.jsonl). Answers are appended whole: a rerun resumes where a run stopped.
            """)

    @Option(help: "Checkpoint directory.")
    var model: String

    @Option(help: "The benchmark, recorded and used to check the question file (e.g. pope, scienceqa, mmbench, mme, textvqa).")
    var benchmark: String

    @Option(help: "Question file: LLaVA's jsonl, ScienceQA's conversation JSON (.json) or MMBench's TSV.")
    var questions: String

    @Option(help: "Directory the questions' image names are relative to (MMBench's images are inline).")
    var images: String?

    @Option(help: "The answers file (one JSON object a line); with --setting, OUT.NAME.jsonl per setting.")
    var answersFile: String

    @Option(parsing: .singleValue, help: "NAME:FLAGS, e.g. 'none:--reduction none' or 'pdrop128:--budget-tokens 128'; repeatable.")
    var setting: [String] = []

    @OptionGroup var reductionOptions: ReductionOptions
    @OptionGroup var computeOptions: ComputeOptions

    @Option(help: "Tokens per answer at most (LLaVA's scripts: 128).")
    var maxNewTokens: Int = 128

    @Option(help: "Split the questions into this many chunks (LLaVA's --num-chunks) ...")
    var numChunks: Int = 1

    @Option(help: "... and answer this one (0-based; LLaVA's --chunk-idx).")
    var chunkIndex: Int = 0

    @Option(help: "Conversation template: \(ConversationTemplate.all.map(\.name).joined(separator: ", ")).\(templateDefaultHelp)")
    var template: String?

    @Option(help: "LLaVA-NeXT: use only grid resolutions of at most this many tiles.")
    var maxTiles: Int?

    @Option(help: "model_id written into the answers (default: the checkpoint directory's name).")
    var modelId: String?

    func validate() throws {
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1, got \(maxNewTokens)") }
        if numChunks < 1 || !(0..<numChunks).contains(chunkIndex) {
            throw ValidationError("--chunk-index must be in 0..<--num-chunks (\(numChunks)), got \(chunkIndex)")
        }
        if let template, ConversationTemplate.named(template) == nil { throw ValidationError("--template '\(template)' is unknown") }
    }

    /// `--setting NAME:FLAGS` as settings, or the reduction flags as one unnamed setting.
    func evaluationSettings() throws -> [(name: String?, setting: EvaluationSetting)] {
        if setting.isEmpty {
            let request = try reductionOptions.request()
            return [(nil, try EvaluationSetting(name: request.kind.rawValue, request: request))]
        }
        return try setting.map { text in
            guard let colon = text.firstIndex(of: ":") else {
                throw ValidationError("--setting \(text.debugDescription) is not NAME:FLAGS (e.g. 'pdrop128:--budget-tokens 128')")
            }
            let name = String(text[..<colon])
            let flags = text[text.index(after: colon)...].split(separator: " ").map(String.init)
            let options: ReductionOptions
            do { options = try ReductionOptions.parse(flags) } catch {
                throw ValidationError("--setting \(name): \(ReductionOptions.message(for: error))")
            }
            return (name, try EvaluationSetting(name: name, request: try options.request()))
        }
    }

    func run() throws {
        computeOptions.apply()
        try failing {
            let settings = try evaluationSettings()
            let questionsFile = URL(fileURLWithPath: questions)
            let all = try loadQuestions(file: questionsFile, imagesDirectory: images.map { URL(fileURLWithPath: $0) })
            let part = Array(try chunk(all, count: numChunks, index: chunkIndex))
            let directory = URL(fileURLWithPath: model)
            log("loading \(directory.path); \(part.count) of \(all.count) \(benchmark) questions (chunk \(chunkIndex + 1) of \(numChunks))")
            let session = try withFlagNames {
                try InferenceSession(
                    directory: directory, imageOptions: ImageProcessingOptions(maxTiles: maxTiles),
                    template: template.flatMap(ConversationTemplate.named))
            }
            let answers = URL(fileURLWithPath: answersFile)
            try FileManager.default.createDirectory(at: answers.deletingLastPathComponent(), withIntermediateDirectories: true)
            let run = try EvaluationRun(
                session: session, settings: settings.map(\.setting), files: settings.map { Evaluation.answersFile(answers, setting: $0.name) },
                maxNewTokens: maxNewTokens, modelId: modelId ?? directory.lastPathComponent)
            // Answers are appended whole, so the default action of SIGINT / SIGTERM (end the
            // process) loses nothing; a launcher may have blocked them for its children.
            var interruptions = sigset_t()
            sigemptyset(&interruptions)
            sigaddset(&interruptions, SIGINT)
            sigaddset(&interruptions, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &interruptions, nil)
            let progress = ProgressLine(unit: "question", total: part.count, first: 0)
            let clock = ContinuousClock(), start = clock.now
            let summary = try run.answer(part) { done, total in
                let seconds = (clock.now - start).inSeconds
                progress.update(position: done, seconds: seconds, detail: String(format: "%.2f s/question", seconds / Double(max(done, 1))))
            }
            progress.finishLine()
            log("answered \(summary.answered), found \(summary.resumed) already answered; wrote \(run.files.map(\.path).joined(separator: ", "))")
        }
    }
}

/// Joins the answers files of chunks into the file one run would have written.
struct EvalMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge", abstract: "Join chunk answers files (in chunk order) into one answers file.")

    @Option(help: "The merged answers file.")
    var output: String

    @Argument(help: "The chunks' answers files, chunk 0 first.")
    var chunks: [String]

    func run() throws {
        try failing {
            let count = try mergeAnswers(chunks.map { URL(fileURLWithPath: $0) }, into: URL(fileURLWithPath: output))
            log("merged \(count) answers from \(chunks.count) chunks into \(output)")
        }
    }
}
