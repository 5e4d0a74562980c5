import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import TokenReduction
import CKernels

#if canImport(Glibc)
import Glibc
#endif

/// What this machine can do, measured in the same run as the figures compared with it.
///
/// The arithmetic peaks come from loops of independent multiply-adds on registers only (no
/// memory, no library), so they are the cores' limits; the library products (OpenBLAS's sgemm,
/// our bf16 kernel) are measured beside them on a decoder's shape. Fields after `threads` are
/// optional so that JSON written before they existed still reads.
public struct MachinePeaks: Codable, Equatable {
    /// Best of several fp32 sgemm calls of a decoder's shape (1024 × 4096 × 4096), in GFLOP/s (2 per multiply-add).
    public var sgemmGFLOPs: Double
    /// Best of several streaming reads of a 1 GiB buffer on every thread (8 independent vector
    /// sums each), in GB/s.
    public var memoryGBs: Double
    public var threads: Int
    /// The instruction sets the kernels can use (`CPUFeatures.names`).
    public var cpuFeatures: [String]?
    /// fp32 FMA peak on every thread (512-bit FMAs with AVX-512, else 256-bit), GFLOP/s.
    public var fp32PeakGFLOPs: Double?
    /// bf16 dot-product peak (VDPBF16PS) on every thread, GFLOP/s; nil without AVX512-BF16.
    public var bf16PeakGFLOPs: Double?
    /// Our bf16 product (`BFloat16Products`) on the sgemm's shape, GFLOP/s; nil without AVX512-BF16.
    public var bf16GemmGFLOPs: Double?

    public static func measure() -> MachinePeaks {
        let bf16 = BFloat16Products.isAvailable
        return MachinePeaks(
            sgemmGFLOPs: sgemmPeak(), memoryGBs: memoryBandwidth(), threads: ThreadPool.threadCount,
            cpuFeatures: CPUFeatures.current.names, fp32PeakGFLOPs: registerPeak { pd_peak_fp32($0, $1) },
            bf16PeakGFLOPs: bf16 ? registerPeak { pd_peak_bf16($0, $1) } : nil, bf16GemmGFLOPs: bf16 ? bfloat16GemmPeak() : nil)
    }

    /// The shape of the library products: a 1024-token prefill through a 4096 × 4096 projection.
    static let productShape = (m: 1024, n: 4096, k: 4096)

    static func sgemmPeak() -> Double {
        let (m, n, k) = productShape
        let a = Tensor(shape: [m, k]), b = Tensor(shape: [n, k]), c = Tensor(shape: [m, n])
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
        var best = 0.0
        for _ in 0..<4 {
            let seconds = timed { BLAS.matmulTransposedB(c.pointer, a.pointer, b.pointer, m: m, n: n, k: k) }
            best = max(best, 2 * Double(m * n * k) / seconds / 1e9)
        }
        withExtendedLifetime((a, b, c)) {}
        return best
    }

    static func bfloat16GemmPeak() -> Double {
        let (m, n, k) = productShape
        let a = Tensor(shape: [m, k]), c = Tensor(shape: [m, n])
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        let weights = UnsafeMutablePointer<UInt16>.allocate(capacity: n * k)  // (n, k) bf16
        defer { weights.deallocate() }
        for i in 0..<(n * k) { weights[i] = HalfPrecision.bfloat16FromFloat(Float(i % 5) * 0.01) }
        var best = 0.0
        for _ in 0..<4 {
            let seconds = timed { BFloat16Products.multiply(c.pointer, a.pointer, bfloat16Weights: weights, m: m, n: n, k: k) }
            best = max(best, 2 * Double(m * n * k) / seconds / 1e9)
        }
        withExtendedLifetime((a, c)) {}
        return best
    }

    /// Runs a register-only peak loop on every thread at once; the best of three, in GFLOP/s.
    static func registerPeak(_ loop: (Int, UnsafeMutablePointer<Float>) -> Double) -> Double {
        let iterations = 20_000_000, threads = ThreadPool.threadCount
        let checksums = UnsafeMutablePointer<Float>.allocate(capacity: threads)  // (threads) loop results
        let operations = UnsafeMutablePointer<Double>.allocate(capacity: threads)  // (threads) FLOPs done
        defer { checksums.deallocate(); operations.deallocate() }
        var best = 0.0
        for _ in 0..<3 {
            let seconds = timed {
                ThreadPool.parallelFor(threads) { range in
                    for thread in range { operations[thread] = loop(iterations, checksums + thread) }
                }
            }
            best = max(best, (0..<threads).reduce(0.0) { $0 + operations[$1] } / seconds / 1e9)
        }
        return best
    }

    static func memoryBandwidth() -> Double {
        let count = 1 << 28  // 1 GiB of fp32
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)  // (count) fp32, all ones
        defer { buffer.deallocate() }
        ThreadPool.parallelFor(count, minimumPerThread: 1 << 20) { range in
            (buffer + range.lowerBound).initialize(repeating: 1, count: range.count)
        }
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: ThreadPool.threadCount)  // (threads) partial sums
        defer { sums.deallocate() }
        var best = 0.0
        for _ in 0..<4 {
            let seconds = timed {
                ThreadPool.parallelFor(count, minimumPerThread: 1 << 20) { range in
                    sums[range.lowerBound * ThreadPool.threadCount / count] = pd_stream_sum(buffer + range.lowerBound, range.count)
                }
            }
            best = max(best, Double(count * 4) / seconds / 1e9)
        }
        return best
    }

    /// The arithmetic limit a prefill computed at `precision` is compared with: the register-loop
    /// peak of that precision (the sgemm figure for JSON written before the peaks were measured).
    public func arithmeticPeak(_ precision: ProductPrecision) -> Double {
        if precision == .bfloat16, let bf16PeakGFLOPs { return bf16PeakGFLOPs }
        return fp32PeakGFLOPs ?? sgemmGFLOPs
    }

    /// One line for progress output.
    public var summary: String {
        var text = fp32PeakGFLOPs.map { String(format: "fp32 FMA peak %.1f GFLOP/s", $0) } ?? "(peaks not measured in this run)"
        if let bf16PeakGFLOPs { text += String(format: ", bf16 dot peak %.1f", bf16PeakGFLOPs) }
        text += String(format: "; sgemm %.1f", sgemmGFLOPs)
        if let bf16GemmGFLOPs { text += String(format: ", bf16 product %.1f", bf16GemmGFLOPs) }
        text += String(format: " GFLOP/s; memory %.1f GB/s; %d threads", memoryGBs, threads)
        if let cpuFeatures { text += "; " + cpuFeatures.joined(separator: " ") }
        return text
    }
}

/// One reduction's figures on one preset.
public struct ReductionBenchmark: Codable, Equatable {
    public var reduction: String
    public var prefillSeconds: Double
    /// Seconds of the prefill spent ranking image tokens.
    public var rankingSeconds: Double
    public var decodeTokensPerSecond: Double
    /// Peak resident memory of the process during this run.
    public var peakResidentBytes: Int
    /// Keys and values the prefill left in the caches (fp32).
    public var keyValueCacheBytes: Int
    /// Exact multiply-adds of the timed prefill: decoder, ranking and lm_head (not the vision tower).
    public var exactPrefillMultiplyAdds: Double
    public var paperImageTeraFLOPs: Double
    /// 2 × exact multiply-adds / prefill seconds.
    public var achievedGFLOPs: Double
    /// achievedGFLOPs / the arithmetic peak of the precision the products computed in, measured in the same run
    /// (`MachinePeaks.arithmeticPeak`).
    public var prefillEfficiency: Double
    /// Vanilla prefill seconds / this prefill's seconds.
    public var speedupOverNone: Double
    /// Vanilla exact multiply-adds / this run's.
    public var exactFLOPsRatio: Double
    /// decode tokens/s ÷ (memory bandwidth ÷ weight bytes read per token).
    public var decodeEfficiency: Double
}

/// A preset's figures for none, FastV and PyramidDrop.
public struct PresetBenchmark: Codable, Equatable {
    public var preset: String
    public var imageTokens: Int
    public var textTokens: Int
    public var tiles: Int
    public var machine: MachinePeaks
    /// The products' precision (`ProductPrecision`'s raw value); nil in JSON from before it was recorded (fp32).
    public var compute: String?
    /// How the matrices are stored (`WeightStorageType`'s raw value); nil in JSON from before it was recorded (bf16).
    public var weights: String?
    /// Weight bytes a decode step reads (decoder matrices and lm_head).
    public var decodeWeightBytes: Int
    public var visionSeconds: Double
    public var results: [ReductionBenchmark]
    /// The same work in PyTorch (tools/bench_pytorch.py), when compared.
    public var pytorch: PyTorchComparison?
}

/// What tools/bench_pytorch.py measured (its pytorch.json).
public struct PyTorchTimings: Codable, Equatable {
    public var torch: String
    /// Weights and compute: "fp32" or "bf16"; nil in JSON from before it was recorded (fp32).
    public var dtype: String?
    public var threads: Int
    public var visionSeconds: Double
    public var prefillSecondsNone: Double
    public var prefillSecondsPDrop: Double
    public var note: String
}

/// PyTorch's seconds divided by ours: above 1 means we are faster.
public struct PyTorchComparison: Codable, Equatable {
    public var timings: PyTorchTimings
    public var visionSpeedup: Double
    public var prefillSpeedupNone: Double
    public var prefillSpeedupPDrop: Double
}

/// Random-weight LLaVA models of a preset's shape, timed for each reduction.
public enum Benchmark {
    /// The LLaVA configuration of a preset (the vision tower runs to its feature layer -2).
    public static func configuration(_ preset: ModelPreset) throws -> LlavaConfiguration {
        guard case let .clip(v) = preset.vision else {
            throw PresetUnsupportedError(preset: preset.name, reason: "it is not a LLaVA; training benchmarks run LLaVA shapes only")
        }
        return LlavaConfiguration { c in
            let d = preset.decoder
            c.textConfig = LlamaConfiguration {
                $0.vocabSize = d.vocabulary; $0.hiddenSize = d.hidden; $0.intermediateSize = d.intermediate
                $0.numHiddenLayers = d.layers; $0.numAttentionHeads = d.heads; $0.numKeyValueHeads = d.keyValueHeads
                $0.headDim = d.headDim; $0.maxPositionEmbeddings = 8192; $0.rmsNormEps = 1e-5
            }
            let perSide = Int(Double(v.patchesPerTile).squareRoot())
            c.visionConfig = CLIPVisionConfiguration {
                $0.hiddenSize = v.hidden; $0.intermediateSize = v.intermediate; $0.numHiddenLayers = v.layersRun + 1
                $0.numAttentionHeads = v.heads; $0.patchSize = v.patchSize; $0.imageSize = perSide * v.patchSize
            }
        }
    }

    /// Builds the random model, measures the machine, then runs none, FastV (K 2, R 0.5) and
    /// PyramidDrop (the paper's default schedule) on one prompt of `textTokens` text tokens
    /// around the image block. `progress` receives a line per step.
    public static func run(
        preset: ModelPreset, textTokens: Int = 40, decodeTokens: Int = 8, repeats: Int = 2, weights: WeightStorageType = .bfloat16,
        progress: (String) -> Void = { _ in }
    ) throws -> PresetBenchmark {
        progress("\(preset.name): generating random \(weights == .q8_0 ? "Q8_0" : "bf16") weights")
        if case let .qwen2VL(shape, grid) = preset.vision {
            return try runQwen2VL(
                preset: preset, shape: shape, tokenGrid: grid, textTokens: textTokens, decodeTokens: decodeTokens, repeats: repeats,
                progress: progress)
        }
        let configuration = try configuration(preset)
        let llava = LlavaModel(configuration: configuration, loader: RandomWeightSource(seed: 1, storage: weights), layout: .hub)
        let side = configuration.visionConfig.imageSize
        var state: UInt64 = 12345
        let pixels = Tensor(shape: [3, side, side])
        for i in 0..<pixels.count { pixels[i] = RandomWeightSource.uniform(&state) }
        // Prompt: 5 text tokens, the image block, the rest of the text (the question and "ASSISTANT:").
        let before = 5, imageTokens = preset.tiles * llava.tokensPerTile
        let ids = (0..<(textTokens + imageTokens)).map { index -> Int in
            if index >= before && index < before + imageTokens { return configuration.imageTokenIndex }
            return 3 + (index * 7919) % 31000
        }
        return try measure(
            name: preset.name, model: llava, tiles: preset.tiles, inputIds: ids, positions: nil, decodeTokens: decodeTokens,
            repeats: repeats, progress: progress
        ) {
            // One block holds every tile's features (LLaVA-NeXT's anyres block is one block), in order.
            let tiles = (0..<preset.tiles).map { _ in llava.imageFeatures(pixelValues: pixels) }
            return Tensor(shape: [imageTokens, configuration.textConfig.hiddenSize], values: tiles.flatMap { $0.toArray() })
        }
    }

    /// A random Qwen2-VL / Qwen2.5-VL of the preset's shape on one image of `tokenGrid` merged
    /// patches: the prompt is 5 text tokens, the image's pads, the rest of the text, at its 3-D positions.
    static func runQwen2VL(
        preset: ModelPreset, shape: Qwen2VLVisionShape, tokenGrid: (rows: Int, columns: Int), textTokens: Int, decodeTokens: Int,
        repeats: Int, progress: (String) -> Void
    ) throws -> PresetBenchmark {
        let d = preset.decoder, windowed = shape.windowTokens != nil
        let half = d.headDim / 2, temporal = half / 4  // Qwen2-VL's [16, 24, 24] for head_dim 128
        var vision = windowed ? Qwen2VLVisionConfiguration.qwen25VLDefaults : Qwen2VLVisionConfiguration()
        vision.depth = shape.depth; vision.embedDim = shape.embed; vision.hiddenSize = d.hidden; vision.numHeads = 16
        vision.mlpRatio = Double(shape.mlp) / Double(shape.embed); vision.intermediateSize = shape.mlp
        vision.spatialMergeSize = shape.mergeSize
        if let side = shape.windowTokens {
            vision.windowSize = side * shape.mergeSize * vision.patchSize
            vision.fullAttentionBlocks = (0..<shape.fullAttentionBlocks).map { (shape.depth / shape.fullAttentionBlocks) * ($0 + 1) - 1 }
        }
        let text = LlamaConfiguration {
            $0.vocabSize = d.vocabulary; $0.hiddenSize = d.hidden; $0.intermediateSize = d.intermediate
            $0.numHiddenLayers = d.layers; $0.numAttentionHeads = d.heads; $0.numKeyValueHeads = d.keyValueHeads
            $0.headDim = d.headDim; $0.maxPositionEmbeddings = 32_768; $0.ropeTheta = 1_000_000
            $0.attentionBias = true; $0.mropeSection = [temporal, (half - temporal) / 2, half - temporal - (half - temporal) / 2]
        }
        var configuration = Qwen2VLConfiguration(text: text, vision: vision)
        // The image's special tokens at the top of the vocabulary (the prompt's text ids stay below 31003).
        (configuration.imageTokenId, configuration.visionStartTokenId, configuration.visionEndTokenId) = (d.vocabulary - 3, d.vocabulary - 2, d.vocabulary - 1)
        try configuration.validate(file: preset.name)
        let model = Qwen2VLModel(configuration: configuration, loader: RandomWeightSource(seed: 1), layout: .hub)
        let grid = MultimodalRotaryPositions.ImageGrid(frames: 1, rows: tokenGrid.rows * shape.mergeSize, columns: tokenGrid.columns * shape.mergeSize)
        let patches = grid.rows * grid.columns
        var state: UInt64 = 12345
        let pixels = Tensor(shape: [patches, shape.patchDimension])  // (patches, 3·2·14·14)
        for i in 0..<pixels.count { pixels[i] = RandomWeightSource.uniform(&state) }
        let image = ImageInput(tiles: [pixels], patchGrid: grid)
        let before = 5, imageTokens = model.imageTokenCount(image)
        let ids = (0..<(textTokens + imageTokens)).map { index -> Int in
            if index >= before && index < before + imageTokens { return configuration.imageTokenId }
            return 3 + (index * 7919) % 31000
        }
        return try measure(
            name: preset.name, model: model, tiles: 1, inputIds: ids, positions: try model.promptPositions(tokens: ids, images: [image]),
            decodeTokens: decodeTokens, repeats: repeats, progress: progress
        ) { model.imageFeatures(image) }
    }

    /// The same measurements on a checkpoint directory written by tools/bench_pytorch.py (its
    /// bench-inputs.safetensors holds the prompt ids and pixel values), compared with the
    /// PyTorch timings in `pytorchReport` (its pytorch.json).
    public static func run(
        checkpoint directory: URL, pytorchReport: URL?, decodeTokens: Int = 8, repeats: Int = 2,
        progress: (String) -> Void = { _ in }
    ) throws -> PresetBenchmark {
        progress("\(directory.lastPathComponent): loading the checkpoint")
        let loaded = try LoadedModel.load(directory: directory)
        guard loaded.visionLanguageModel != nil else { throw PipelineError.notAVisionLanguageModel(directory: directory.path) }
        guard let llava = loaded.llava else {
            throw PipelineError.needsLlava(directory: directory.path, family: loaded.family.name, purpose: "a checkpoint benchmark against PyTorch")
        }
        let inputs = try SafeTensorsFile(path: directory.appendingPathComponent("bench-inputs.safetensors").path)
        let pixels = try inputs.floatTensor("pixel_values")
        var benchmark = try measure(
            name: directory.lastPathComponent, model: llava, tiles: 1, inputIds: try inputs.integers("input_ids"), positions: nil,
            decodeTokens: decodeTokens, repeats: repeats, progress: progress
        ) { llava.imageFeatures(pixelValues: pixels) }
        if let pytorchReport {
            let theirs = try JSONDecoder().decode(PyTorchTimings.self, from: Data(contentsOf: pytorchReport))
            let none = benchmark.results[0], pyramid = benchmark.results[2]
            benchmark.pytorch = PyTorchComparison(
                timings: theirs, visionSpeedup: theirs.visionSeconds / benchmark.visionSeconds,
                prefillSpeedupNone: theirs.prefillSecondsNone / none.prefillSeconds,
                prefillSpeedupPDrop: theirs.prefillSecondsPDrop / pyramid.prefillSeconds)
        }
        return benchmark
    }

    /// Measures the machine, the vision tower (`visionPass`: the image block's features (image
    /// tokens, hidden) from `tiles` tower runs), then none / FastV / PDrop prefill and decode at
    /// `positions` (0..<tokens by default); each timing is the best of `repeats` runs (the machines
    /// are shared and noisy).
    static func measure(
        name: String, model vlm: any VisionLanguageModel, tiles: Int, inputIds ids: [Int], positions: Positions?, decodeTokens: Int,
        repeats: Int, progress: (String) -> Void, visionPass: () -> Tensor
    ) throws -> PresetBenchmark {
        progress("\(name): measuring the machine (arithmetic peaks, sgemm, memory bandwidth)")
        let machine = MachinePeaks.measure()
        progress("  " + machine.summary)
        guard let model = vlm.decoder as? LlamaModel else { preconditionFailure("every family's decoder is LlamaModel") }
        // Untimed warm-up: every weight page read once (a mapped checkpoint is faulted in from the
        // page cache on first touch; PyTorch's weights are already in memory when it is timed).
        progress("\(name): warming up (one untimed pass over every weight)")
        var blockFeatures = visionPass()  // (image tokens, hidden): the one image block's rows
        _ = try generateGreedy(model: model, prompt: Array(ids.prefix(8)).map { $0 == vlm.imageTokenId ? 1 : $0 },
                               maxNewTokens: 2, stopAtEndOfSequence: false)
        progress("\(name): vision tower on \(tiles) tile(s)")
        let visionSeconds = (0..<max(1, repeats)).map { _ in timed { blockFeatures = visionPass() } }.min() ?? 0

        guard let first = ids.firstIndex(of: vlm.imageTokenId) else {
            throw PipelineError.promptWithoutImage(prompt: "benchmark input ids")
        }
        let imageTokens = ids.filter { $0 == vlm.imageTokenId }.count
        let block = first..<(first + imageTokens)
        let textTokens = ids.count - imageTokens
        let embeddings = try vlm.embed(tokens: ids, imageFeatures: [blockFeatures])  // (prompt, hidden)

        let decoder = model.shape
        // Multi-axis (M-RoPE) positions are preserved after a drop (PYRAMIDDROP.md §9).
        let pyramidPositions: PositionMode = model.positionAxes > 1 ? .preserve : .reindex
        let reducers: [VisualTokenReducer] = [
            NoReduction(),
            FastVReducer(setting: try FastVSetting(layer: 2, dropRatio: 0.5, layerCount: decoder.layers)),
            PyramidDropReducer(schedule: try PyramidDropSchedule.paperDefault(layerCount: decoder.layers), positionMode: pyramidPositions),
        ]
        let decodeWeightBytes = model.layers.reduce(0) { total, layer in
            total + [layer.queryProjection, layer.keyProjection, layer.valueProjection, layer.outputProjection,
                     layer.gateProjection, layer.upProjection, layer.downProjection].reduce(0) { $0 + $1.weight.byteCount }
        } + model.lmHead.byteCount

        // What the decoder's prefill products compute in (fp32 weights stay fp32 whatever `--compute` asks).
        let precision = model.layers.first?.queryProjection.weight.manyRowPrecision ?? WeightMatrix.productPrecision
        var results: [ReductionBenchmark] = []
        for reducer in reducers {
            progress("\(name): \(describe(reducer))")
            var entry = try measure(
                reducer: reducer, model: model, embeddings: embeddings, positions: positions, block: block, textTokens: textTokens,
                decodeTokens: decodeTokens, repeats: repeats, machine: machine, precision: precision, decodeWeightBytes: decodeWeightBytes)
            if let vanilla = results.first {
                entry.speedupOverNone = vanilla.prefillSeconds / entry.prefillSeconds
                entry.exactFLOPsRatio = vanilla.exactPrefillMultiplyAdds / entry.exactPrefillMultiplyAdds
            }
            progress(String(format: "  prefill %.2f s (%.1f GFLOP/s, %.0f%% of peak), decode %.2f tokens/s (%.0f%% of the bandwidth bound)",
                            entry.prefillSeconds, entry.achievedGFLOPs, 100 * entry.prefillEfficiency,
                            entry.decodeTokensPerSecond, 100 * entry.decodeEfficiency))
            results.append(entry)
        }
        return PresetBenchmark(
            preset: name, imageTokens: imageTokens, textTokens: textTokens, tiles: tiles, machine: machine,
            compute: precision.rawValue, weights: model.layers.first?.queryProjection.weight.storageType.rawValue,
            decodeWeightBytes: decodeWeightBytes, visionSeconds: visionSeconds, results: results, pytorch: nil)
    }

    /// One reducer's prefill and decode on embeddings(prompt, hidden) with the image `block`:
    /// the best of `repeats` runs, its exact FLOPs and efficiencies (speedups are filled in by the caller).
    static func measure(
        reducer: VisualTokenReducer, model: LlamaModel, embeddings: Tensor, positions: Positions?, block: Range<Int>, textTokens: Int,
        decodeTokens: Int, repeats: Int, machine: MachinePeaks, precision: ProductPrecision, decodeWeightBytes: Int
    ) throws -> ReductionBenchmark {
        func run() throws -> GenerationResult {
            try generateGreedy(
                model: model, promptEmbeddings: embeddings.copyRows(0..<embeddings.size(0)), positions: positions, imageBlocks: [block],
                reducer: reducer, maxNewTokens: decodeTokens + 1, stopAtEndOfSequence: false)
        }
        resetPeakResidentMemory()
        var result = try run()
        for _ in 1..<max(1, repeats) {
            let again = try run()
            if again.prefillSeconds < result.prefillSeconds {
                result.prefillSeconds = again.prefillSeconds
                result.rankingSeconds = again.rankingSeconds
            }
            result.decodeSeconds = min(result.decodeSeconds, again.decodeSeconds)
        }
        let report = FLOPs.prefillReport(
            decoder: model.shape, visionAndProjector: 0, textTokens: textTokens,
            imageBlockSizes: [block.count], reducer: reducer)
        let exact = report.exactLanguageModel + report.exactRanking + report.exactLMHead
        let achieved = 2 * exact / result.prefillSeconds / 1e9
        let keyValueCacheBytes = result.tokensPerLayer.reduce(0) { $0 + 2 * $1 * model.keyValueWidth * 4 }
        // A decode step reads every weight once and the whole KV cache once: its bound in tokens/s.
        let decodeBound = machine.memoryGBs * 1e9 / Double(decodeWeightBytes + keyValueCacheBytes)
        return ReductionBenchmark(
            reduction: describe(reducer), prefillSeconds: result.prefillSeconds, rankingSeconds: result.rankingSeconds,
            decodeTokensPerSecond: result.decodeTokensPerSecond, peakResidentBytes: peakResidentMemory(),
            keyValueCacheBytes: keyValueCacheBytes,
            exactPrefillMultiplyAdds: exact, paperImageTeraFLOPs: report.paperImageTeraFLOPs, achievedGFLOPs: achieved,
            prefillEfficiency: achieved / machine.arithmeticPeak(precision), speedupOverNone: 1, exactFLOPsRatio: 1,
            decodeEfficiency: result.decodeTokensPerSecond / decodeBound)
    }

    /// A Markdown report of `benchmarks`; `source` says what produced it (Markdown).
    public static func markdown(_ benchmarks: [PresetBenchmark], source: String) -> String {
        var lines = [
            "# Performance", "",
            "Generated by \(source); do not edit by hand. Every ratio compares figures measured in the same run",
            "on this machine: its own limits are measured first (fp32 FMA and bf16 dot-product peaks from",
            "register-only loops on every thread, OpenBLAS's sgemm and our bf16 product on a 1024 × 4096 × 4096",
            "product, streaming-read bandwidth); each timing is the best of several runs (the machine is shared",
            "and noisy). Weights are random bf16 (the shapes are the presets'); each section says whether the",
            "products computed in fp32 or bf16 (`--compute`). \"Of peak\" divides by the arithmetic peak of that",
            "precision. FLOP/s count 2 per multiply-add; the exact prefill count covers the decoder, ranking and",
            "lm_head (the vision tower is timed apart).", "",
        ]
        for benchmark in benchmarks {
            let m = benchmark.machine
            lines.append("## \(benchmark.preset): \(benchmark.imageTokens) image tokens (\(benchmark.tiles) tile\(benchmark.tiles == 1 ? "" : "s")), \(benchmark.textTokens) text tokens")
            lines.append("")
            lines.append("Machine: " + m.summary + ".")
            lines.append(String(format: "Weights: %@. Compute: %@. Vision tower %.2f s. A decode step reads %.2f GB of weights and the KV cache (bound: bandwidth ÷ both).",
                                benchmark.weights ?? "bfloat16", benchmark.compute ?? "fp32", benchmark.visionSeconds, Double(benchmark.decodeWeightBytes) / 1e9))
            lines.append("")
            if let comparison = benchmark.pytorch {
                let t = comparison.timings
                lines.append(String(format: "Same weights, inputs and thread count (%d) in PyTorch %@, %@ (tools/bench_pytorch.py; %@):",
                                    t.threads, t.torch, t.dtype ?? "fp32", t.note))
                lines.append("")
                lines.append("| work | PyTorch s | ours s | PyTorch / ours |")
                lines.append("| --- | ---: | ---: | ---: |")
                lines.append(String(format: "| vision tower + projector | %.2f | %.2f | %.2f× |", t.visionSeconds, benchmark.visionSeconds, comparison.visionSpeedup))
                lines.append(String(format: "| prefill, no reduction | %.2f | %.2f | %.2f× |", t.prefillSecondsNone, benchmark.results[0].prefillSeconds, comparison.prefillSpeedupNone))
                lines.append(String(format: "| prefill, PyramidDrop | %.2f | %.2f | %.2f× |", t.prefillSecondsPDrop, benchmark.results[2].prefillSeconds, comparison.prefillSpeedupPDrop))
                lines.append("")
            }
            lines.append("| reduction | prefill s | GFLOP/s | of peak | speedup | exact FLOPs ratio | speedup / FLOPs ratio | ranking share | paper image TFLOPs | decode tok/s | of bandwidth bound | KV cache MB | peak RSS GB |")
            lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in benchmark.results {
                lines.append(String(format: "| %@ | %.2f | %.1f | %.0f%% | %.2f× | %.2f× | %.0f%% | %.2f%% | %.2f | %.2f | %.0f%% | %.1f | %.2f |",
                                    r.reduction, r.prefillSeconds, r.achievedGFLOPs, 100 * r.prefillEfficiency, r.speedupOverNone,
                                    r.exactFLOPsRatio, 100 * r.speedupOverNone / r.exactFLOPsRatio, 100 * r.rankingSeconds / r.prefillSeconds,
                                    r.paperImageTeraFLOPs,
                                    r.decodeTokensPerSecond, 100 * r.decodeEfficiency, Double(r.keyValueCacheBytes) / 1e6,
                                    Double(r.peakResidentBytes) / 1e9))
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}

/// Wall seconds of `body`.
func timed(_ body: () -> Void) -> Double {
    ContinuousClock().measure(body).inSeconds
}

/// Peak resident set size of this process (VmHWM), in bytes.
public func peakResidentMemory() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let digits = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }
        return (digits.first ?? 0) * 1024
    }
    return 0
}

/// Starts a new peak for `peakResidentMemory` (Linux: writing 5 to clear_refs resets VmHWM).
public func resetPeakResidentMemory() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}
