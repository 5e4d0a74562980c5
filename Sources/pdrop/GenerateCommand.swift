import ArgumentParser
import Engine
import Foundation
import Models

/// Loads a checkpoint and generates greedily from a prompt of token ids.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Greedy generation from a prompt of token ids.")

    @Option(name: .long, help: "Checkpoint directory (config.json + *.safetensors).")
    var model: String

    @Option(name: .long, help: "Prompt token ids, comma-separated (e.g. 1,450,4996).")
    var promptIds: String

    @Option(name: .long, help: "Number of tokens to generate.")
    var maxNewTokens: Int = 16

    @Flag(name: .long, help: "Keep generating past an end-of-sequence token.")
    var ignoreEos = false

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if maxNewTokens < 0 { throw ValidationError("--max-new-tokens must be ≥ 0, got \(maxNewTokens)") }
    }

    func run() throws {
        let prompt = try parseTokenIds(promptIds)
        try failing {
            let clock = ContinuousClock()
            let start = clock.now
            let loaded = try LoadedModel.load(directory: URL(fileURLWithPath: model))
            let loadSeconds = Double((clock.now - start).components.attoseconds) * 1e-18 + Double((clock.now - start).components.seconds)
            let result = try generateGreedy(
                model: loaded.languageModel, prompt: prompt, maxNewTokens: maxNewTokens, stopAtEndOfSequence: !ignoreEos)
            if json {
                let report = GenerateReport(result: result, loadSeconds: loadSeconds)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                let c = loaded.languageModel.configuration
                print("model: \(model) (\(loaded.languageLayout.modelPrefix)*: \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), \(c.numAttentionHeads) heads / \(c.numKeyValueHeads) kv heads, vocab \(c.vocabSize)), loaded in \(String(format: "%.3f", loadSeconds)) s")
                print("prompt: \(prompt.count) tokens \(prompt)")
                print("generated: \(result.tokens.count) tokens \(result.tokens)\(result.stoppedAtEndOfSequence ? " (stopped at end of sequence)" : "")")
                print(String(format: "prefill %.4f s, decode %.1f tokens/s", result.prefillSeconds, result.decodeTokensPerSecond))
            }
        }
    }
}

struct GenerateReport: Encodable {
    let tokens: [Int]
    let promptTokens: Int
    let prefillSeconds: Double
    let decodeTokensPerSecond: Double
    let loadSeconds: Double

    init(result: GenerationResult, loadSeconds: Double) {
        tokens = result.tokens
        promptTokens = result.promptTokens
        prefillSeconds = result.prefillSeconds
        decodeTokensPerSecond = result.decodeTokensPerSecond
        self.loadSeconds = loadSeconds
    }
}

func parseTokenIds(_ text: String) throws -> [Int] {
    let pieces = text.split(separator: ",", omittingEmptySubsequences: false)
    var ids: [Int] = []
    for (index, piece) in pieces.enumerated() {
        guard let id = Int(piece.trimmingCharacters(in: .whitespaces)), id >= 0 else {
            throw ValidationError("--prompt-ids: item \(index + 1) ('\(piece)') is not a non-negative integer")
        }
        ids.append(id)
    }
    if ids.isEmpty { throw ValidationError("--prompt-ids is empty") }
    return ids
}
