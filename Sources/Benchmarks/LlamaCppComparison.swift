import Foundation
import TensorCore

/// What tools/llamacpp/bench.sh measured: this engine (`pdrop generate`) and llama.cpp
/// (`llama-bench`) on the same random TinyLlama-shape weights, bf16 and Q8_0, the same prompt
/// length and threads, runs interleaved, the best of each kept and every run listed (its results.json).
public struct LlamaCppComparison: Codable, Equatable {
    public struct Entry: Codable, Equatable {
        /// "pdrop" or "llama.cpp".
        public var engine: String
        /// "bf16" or "q8_0".
        public var format: String
        /// Prompt tokens per second and decoded tokens per second.
        public var prefill: Double
        public var decode: Double
    }

    public var rounds: Int
    public var threads: Int
    public var promptTokens: Int
    public var decodeTokens: Int
    public var best: [Entry]
    /// Every run in the order made: per round and format, ours then llama.cpp's.
    public var runs: [Entry]

    /// Reads results.json; a missing or malformed file is an error naming it and what is wrong.
    public static func load(_ url: URL) throws -> LlamaCppComparison {
        do {
            return try JSONDecoder().decode(LlamaCppComparison.self, from: Data(contentsOf: url))
        } catch let error as DecodingError {
            throw ComparisonFileError(description: "\(url.path): not tools/llamacpp/bench.sh's results (\(describe(error)))")
        } catch {
            throw ComparisonFileError(description: "\(url.path): \(error.localizedDescription)")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .keyNotFound(key, _): "no \"\(key.stringValue)\""
        case let .typeMismatch(_, context), let .valueNotFound(_, context), let .dataCorrupted(context):
            (context.codingPath.map(\.stringValue).joined(separator: ".") + " " + context.debugDescription).trimmingCharacters(in: .whitespaces)
        @unknown default: "\(error)"
        }
    }

    /// Our speed over llama.cpp's in each round (the k-th run of each engine), their median: on a
    /// host whose memory bandwidth moves by a third within minutes, the median of paired rounds
    /// says more than the ratio of two bests, which may come from different moments.
    func medianRoundRatio(format: String, _ speed: (Entry) -> Double) -> Double? {
        let ours = runs.filter { $0.engine == "pdrop" && $0.format == format }
        let theirs = runs.filter { $0.engine == "llama.cpp" && $0.format == format }
        let ratios = zip(ours, theirs).map { speed($0) / speed($1) }.sorted()
        if ratios.isEmpty { return nil }
        return ratios.count % 2 == 1 ? ratios[ratios.count / 2] : (ratios[ratios.count / 2 - 1] + ratios[ratios.count / 2]) / 2
    }

    /// The section docs/PERFORMANCE.md gets: both engines per format, our ratio to llama.cpp, and,
    /// when `benchmarks` holds one, the PyramidDrop prefill set against llama.cpp's (`answerPrefillLines`).
    public func markdown(_ benchmarks: [PresetBenchmark] = []) -> String {
        var lines = [
            "## Side by side with llama.cpp", "",
            "`tools/llamacpp/bench.sh` (llama.cpp built from the source the llama-cpp-python sdist vendors, `-DGGML_NATIVE=ON`): one random "
                + "TinyLlama-1.1B-shape checkpoint as HF safetensors and as GGUF, Q8_0 by `llama-quantize` and by `pdrop quantize`; "
                + "\(promptTokens) prompt tokens, then \(decodeTokens) decoded after them (llama.cpp: `-d \(promptTokens)`), \(threads) threads, best of \(rounds) interleaved rounds. "
                + "Ours: `pdrop generate --compute bf16 --reduction none`; llama.cpp: `llama-bench`.", "",
            "| weights | llama.cpp prefill tok/s | ours | ratio | median ratio of rounds | llama.cpp decode tok/s | ours | ratio | median ratio of rounds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for format in ["bf16", "q8_0"] {
            guard let ours = best.first(where: { $0.engine == "pdrop" && $0.format == format }),
                  let theirs = best.first(where: { $0.engine == "llama.cpp" && $0.format == format }) else { continue }
            let median = { (ratio: Double?) in ratio.map { String(format: "%.2f×", $0) } ?? "—" }
            lines.append(String(format: "| %@ | %.1f | %.1f | %.2f× | %@ | %.2f | %.2f | %.2f× | %@ |", format, theirs.prefill, ours.prefill,
                                ours.prefill / theirs.prefill, median(medianRoundRatio(format: format, \.prefill)), theirs.decode, ours.decode,
                                ours.decode / theirs.decode, median(medianRoundRatio(format: format, \.decode))))
        }
        lines += answerPrefillLines(benchmarks)
        return lines.joined(separator: "\n") + "\n"
    }

    /// A LLaVA answer's prefill with PyramidDrop against llama.cpp's prefill of the same prompt
    /// length without reduction: taken from the benchmark of tools/bench_pytorch.py's bf16 checkpoint
    /// (its language model has the TinyLlama shape of tools/llamacpp/make_random_llama.py) computed
    /// in bf16, when its prompt is as long as this comparison's; no lines otherwise.
    func answerPrefillLines(_ benchmarks: [PresetBenchmark]) -> [String] {
        guard let theirs = best.first(where: { $0.engine == "llama.cpp" && $0.format == "bf16" }),
              let ours = benchmarks.first(where: {
                  $0.pytorch != nil && $0.compute == ProductPrecision.bfloat16.rawValue && $0.weights == WeightStorageType.bfloat16.rawValue
                      && $0.imageTokens + $0.textTokens == promptTokens && $0.results.count == 3
              }) else { return [] }
        let llamaSeconds = Double(promptTokens) / theirs.prefill
        var lines = [
            "", "A LLaVA answer's prefill against llama.cpp's: \(ours.preset)'s language model has this checkpoint's shape, its prompt "
                + "the same \(promptTokens) tokens (\(ours.imageTokens) of them image tokens), bf16 weights and products on both sides "
                + "(the vision tower, \(String(format: "%.2f", ours.visionSeconds)) s, is apart). Target for LLaVA-1.5-7B: PyramidDrop ≥ 2× llama.cpp's prefill.", "",
            "| prefill of \(promptTokens) tokens | seconds | llama.cpp's seconds / these |",
            "| --- | ---: | ---: |",
            String(format: "| llama.cpp, no reduction (best run above) | %.2f | 1.00× |", llamaSeconds),
        ]
        for (label, result) in [("ours, no reduction", ours.results[0]), ("ours, PyramidDrop (\(ours.results[2].reduction))", ours.results[2])] {
            lines.append(String(format: "| %@ | %.2f | %.2f× |", label, result.prefillSeconds, llamaSeconds / result.prefillSeconds))
        }
        return lines
    }
}

/// A results file `pdrop bench --llamacpp` cannot use.
public struct ComparisonFileError: Error, CustomStringConvertible {
    public let description: String
}
