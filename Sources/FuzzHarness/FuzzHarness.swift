import Foundation
import Engine
import Models
import SafeTensors
import TensorCore
import Tokenizer
import Training
import Vision

/// One function per parser of a file a stranger can hand us. `pdrop-fuzz` runs them under libFuzzer
/// (built with `-sanitize=fuzzer,address -DFUZZING`, `make fuzz`) or replays files through them
/// (a normal build); the tests replay the committed corpus (Tests/Fuzz/corpus/<target>/).
/// Thrown errors are the expected outcome for malformed input; a crash, trap, hang, leak or
/// sanitizer report is a bug.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `SafeTensorsFile.parseHeader` on the bytes; when the header is valid, the file opened by path
    /// (mmap) and every tensor read (`floatTensor` / `integers`).
    case safetensors
    /// config.json through `ModelConfiguration.parse` (LLaVA, LLaVA-NeXT and LLaMA families).
    case config
    /// tokenizer.json (before the first NUL byte) and tokenizer_config.json (after it) through
    /// `Tokenizer(data:configData:)`, then `encode` and `decode` of a fixed text.
    case tokenizer
    /// preprocessor_config.json / processor_config.json through `CLIPImageProcessorConfig.parse`
    /// and `AnyresProcessorConfig.parse`.
    case preprocessor
    /// `ImageDecoder.decode` of in-memory bytes (PNG corpus; libpng itself is not instrumented,
    /// our wrapper and its callbacks are).
    case png
    /// `ImageDecoder.decode` of in-memory bytes (JPEG corpus).
    case jpeg
    /// The LLaVA conversation-data JSON through `TrainingDataset.load` (llava-1.5 template, a tiny
    /// tokenizer, image paths confined but the images not opened).
    case conversation
    /// trainer_state.safetensors through `TrainingCheckpoint.restore(from:optimizer:)` beside a
    /// fixed model.safetensors of step 1, into a small AdamW.
    case trainerState = "trainer-state"
}

public enum FuzzHarness {
    /// Pixel limit for the image targets: a header may claim up to 65,536 pixels (e.g. 256 × 256).
    /// A few bytes can claim a large image that the codec then fills in; at the default limit (PIL's,
    /// 179 M pixels) each such input would take seconds and most of the run. The refusal above the
    /// limit is the same check at any limit.
    public static let imageOptions = ImageDecodingOptions(maxPixelCount: 1 << 16)

    /// Text encoded with each fuzzed tokenizer: spaces, digits, punctuation, non-ASCII, an added token.
    public static let tokenizerText = "Hello wörld! 12 345 <s> a\tb\n 猫 🙂"

    /// Runs `data` through `target`'s parser. Errors are returned, not thrown (they are the point;
    /// nil: the input was accepted); anything worse ends the process.
    @discardableResult
    public static func run(_ target: FuzzTarget, _ data: Data) -> Error? {
        do {
            switch target {
            case .safetensors: try safetensors(data)
            case .config: _ = try ModelConfiguration.parse(data, file: "config.json")
            case .tokenizer: try tokenizer(data)
            case .preprocessor:
                let clip = Result { () throws(ImageProcessorConfigError) in try CLIPImageProcessorConfig.parse(data, file: "preprocessor_config.json") }
                _ = try AnyresProcessorConfig.parse(data, file: "preprocessor_config.json")
                _ = try clip.get()
            case .png, .jpeg: _ = try ImageDecoder.decode([UInt8](data), file: "image", options: imageOptions)
            case .conversation: try conversation(data)
            case .trainerState: try trainerState(data)
            }
            return nil
        } catch {
            return error
        }
    }

    static func safetensors(_ data: Data) throws {
        _ = try data.withUnsafeBytes { bytes in try SafeTensorsFile.parseHeader(bytes, file: "model.safetensors") }
        // The header is valid: open it as a file (mmap) and read every tensor through the table.
        // Not model.safetensors: the trainer-state target keeps its fixed weights under that name.
        let url = try Scratch.shared.write(data, to: "input.safetensors")
        let file = try SafeTensorsFile(path: url.path)
        for name in file.tensorNames {
            if (try? file.floatTensor(name)) == nil { _ = try file.integers(name) }
        }
    }

    static func tokenizer(_ data: Data) throws {
        let parts = data.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
        let json = Data(parts.first ?? Data()), config = parts.count > 1 ? Data(parts[1]) : nil
        let tokenizer = try Tokenizer(data: json, configData: config)
        _ = try? tokenizer.encode(tokenizerText, addSpecialTokens: false)
        let ids = try tokenizer.encode(tokenizerText)
        _ = tokenizer.decode(ids)
        _ = tokenizer.decode(ids, skipSpecialTokens: true)
    }

    /// The tiny BPE tokenizer the conversation target tokenizes with (Tests/Fuzz/tiny-tokenizer.json).
    static let tinyTokenizer: Tokenizer = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Fuzz/tiny-tokenizer.json")
        do { return try Tokenizer(tokenizerJSON: url) } catch { fatalError("pdrop-fuzz: cannot load \(url.path): \(error)") }
    }()

    static func conversation(_ data: Data) throws {
        let tokenizer = tinyTokenizer
        guard let imageToken = tokenizer.encode(knownToken: "<image>") else { fatalError("pdrop-fuzz: no <image> token") }
        let url = try Scratch.shared.write(data, to: "data.json")
        // llava-1.5's template: vicuna's differs only by a fixed system prompt, which tokenizing for
        // every input would cost most of the time and find nothing new.
        let dataset = try TrainingDataset.load(
            dataFile: url, imagesDirectory: Scratch.shared.directory, tokenizer: tokenizer, imageTokenID: imageToken,
            tokensPerImage: 3, contextLength: 512, template: .llava15, badRecords: .skip, checksImages: false)
        if dataset.samples.isEmpty { throw NoRecordAccepted() }
    }

    struct NoRecordAccepted: Error {}

    /// A small AdamW over three parameters and the model.safetensors of step 1 beside the state.
    static let optimizerShapes: [(String, [Int])] = [("w", [2, 3]), ("b", [3]), ("s", [])]

    static func trainerState(_ data: Data) throws {
        // `restore` opens the file with `SafeTensorsFile(path:)`, which refuses exactly what
        // `parseHeader` refuses: checked in memory first, the file is written only when it can pass.
        _ = try data.withUnsafeBytes { bytes in try SafeTensorsFile.parseHeader(bytes, file: TrainingCheckpoint.stateFile) }
        let scratch = Scratch.shared
        scratch.writeWeightsOnce()
        try scratch.write(data, to: TrainingCheckpoint.stateFile)
        var parameters: [String: Tensor] = [:]
        for (name, shape) in optimizerShapes { parameters[name] = Tensor(shape: shape) }
        let optimizer = AdamW(settings: OptimizerSettings(), names: optimizerShapes.map(\.0), parameters: parameters)
        _ = try TrainingCheckpoint.restore(from: scratch.directory, optimizer: optimizer)
    }
}

extension Tokenizer {
    /// The id of an added token spelled exactly `content`, when it encodes to one id.
    fileprivate func encode(knownToken content: String) -> Int? {
        guard let ids = try? encode(content, addSpecialTokens: false), ids.count == 1 else { return nil }
        return ids[0]
    }
}

/// One temporary directory per process, reused by every input (removed at exit).
final class Scratch: @unchecked Sendable {
    static let shared = Scratch()
    let directory: URL
    private var wroteWeights = false
    private let lock = NSLock()

    private init() {
        // Memory-backed where there is one: on ext4, rewriting a truncated file flushes it on close.
        let base = FileManager.default.fileExists(atPath: "/dev/shm")
            ? URL(fileURLWithPath: "/dev/shm", isDirectory: true) : FileManager.default.temporaryDirectory
        directory = base.appendingPathComponent("pdrop-fuzz-\(getpid())", isDirectory: true)
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: Scratch.shared.directory) }
    }

    func file(_ name: String) -> URL { directory.appendingPathComponent(name) }

    struct WriteFailed: Error { let path: String }

    /// Writes `data` to the file `name`, replacing its contents. Plain POSIX writes: `Data.write`
    /// fsyncs, which would cost most of each execution.
    @discardableResult
    func write(_ data: Data, to name: String) throws -> URL {
        let url = file(name)
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw WriteFailed(path: url.path) }
        defer { close(descriptor) }
        let complete = data.withUnsafeBytes { bytes -> Bool in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return false }
                offset += written
            }
            return true
        }
        guard complete else { throw WriteFailed(path: url.path) }
        return url
    }

    func writeWeightsOnce() {
        lock.lock()
        defer { lock.unlock() }
        guard !wroteWeights else { return }
        let items = FuzzHarness.optimizerShapes.map { name, shape in
            SafeTensorsWriter.Item(name: name, tensor: Tensor(shape: shape))
        }
        do {
            try SafeTensorsWriter.write(items, metadata: ["step": "1"], to: file(TrainingCheckpoint.weightsFile))
        } catch {
            fatalError("pdrop-fuzz: cannot write \(file(TrainingCheckpoint.weightsFile).path): \(error)")
        }
        wroteWeights = true
    }
}
