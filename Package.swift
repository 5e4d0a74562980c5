// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "PyramidDrop",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "pdrop", targets: ["pdrop"]),
        .library(name: "Engine", targets: ["Engine"]),
        // libFuzzer targets for every parser of a file a stranger can hand us (`make fuzz`); built
        // normally, it replays files through the same functions.
        .executable(name: "pdrop-fuzz", targets: ["pdrop-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries: a module map and a shim header each, nothing else.
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),

        // Foundation's file and JSON errors in words, for every reader and writer of files. Foundation only.
        .target(name: "FileAccess"),
        // Kernels in C for instructions Swift cannot name (AVX-512 BF16), chosen at run time by CPUID.
        // Optimised even in debug builds: the tests run them on real sizes.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        // Storage, shapes, dtype conversion, kernels and the thread pool. Knows nothing of models or files.
        .target(name: "TensorCore", dependencies: ["CBLAS", "CKernels"]),
        // tokenizer.json as the Python tokenizers library runs it. Foundation only.
        .target(name: "Tokenizer", dependencies: ["FileAccess"]),
        // Images: PNG/JPEG decoding as PIL does it, CLIP preprocessing as transformers does it.
        .target(name: "Vision", dependencies: ["CPNG", "CJPEG", "FileAccess"]),
        // The safetensors file format only.
        .target(name: "SafeTensors", dependencies: ["TensorCore", "FileAccess"]),
        // Which image tokens survive: strategies, schedules, FLOPs. Knows nothing of weights.
        .target(name: "TokenReduction"),
        // Configurations, weights and forward passes of the model parts; applies reductions.
        // (Vision for LLaVA-NeXT's anyres feature grid, which the processor and the model share.)
        .target(name: "Models", dependencies: ["FileAccess", "TensorCore", "SafeTensors", "TokenReduction", "Vision"]),
        // What the command line, evaluation and a server share: the inference session (requests,
        // conversation templates, images), generation with sampling, streaming and stop conditions.
        .target(name: "Engine", dependencies: ["Models", "TensorCore", "SafeTensors", "TokenReduction", "Tokenizer", "Vision"]),
        // Training: backward passes of the model parts, loss, AdamW, conversation data, the loop.
        .target(name: "Training", dependencies: ["FileAccess", "Engine", "Models", "TensorCore", "SafeTensors", "TokenReduction", "Tokenizer", "Vision"]),
        // Evaluation: benchmark files, the official scoring rules, answering benchmarks with
        // settings in one pass, reports.
        .target(name: "Evaluation", dependencies: ["FileAccess", "Engine", "Models", "TokenReduction", "TensorCore", "Vision"]),
        // Benchmarks: machine peaks, the paper's model presets, inference and training timings, reports.
        .target(name: "Benchmarks", dependencies: ["CKernels", "Engine", "Training", "Models", "TensorCore", "SafeTensors", "TokenReduction"]),
        // Generated visual question-answering data (scenes, MNIST digit grids) with per-question patches.
        .target(name: "TaskData", dependencies: ["FileAccess", "Vision", "TensorCore", "CZlib"]),
        // `pdrop serve`: OpenAI's chat-completions protocol over HTTP (Hummingbird), batched
        // decoding of concurrent requests, Prometheus metrics.
        .target(
            name: "Serving",
            dependencies: ["Engine", "FileAccess", "Models", "TensorCore", "TokenReduction", "Vision",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Prometheus", package: "swift-prometheus")]),
        .executableTarget(
            name: "pdrop",
            dependencies: ["FileAccess", "Engine", "Serving", "Models", "Training", "Benchmarks", "Evaluation", "TaskData", "Vision", "TensorCore", "TokenReduction", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // One function per parser of untrusted files, for the fuzzer and the corpus-replay tests.
        .target(name: "FuzzHarness", dependencies: ["Engine", "Models", "SafeTensors", "TensorCore", "Tokenizer", "Training", "Vision"]),
        .executableTarget(name: "pdrop-fuzz", dependencies: ["FuzzHarness"], path: "Sources/Fuzz"),

        .target(name: "TestSupport", dependencies: ["TensorCore", "SafeTensors", "Engine", "Models"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CKernels", "TestSupport"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "TestSupport"]),
        .testTarget(name: "TokenReductionTests", dependencies: ["TokenReduction", "Benchmarks"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer"]),
        .testTarget(name: "VisionTests", dependencies: ["Vision"]),
        .testTarget(
            name: "ModelsTests", dependencies: ["Models", "Engine", "TokenReduction", "Vision", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Engine", "TensorCore", "SafeTensors", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Models", "Tokenizer", "TensorCore", "TokenReduction", "Vision", "SafeTensors", "TestSupport"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Engine", "Models", "TestSupport", "Vision"]),
        .testTarget(name: "TaskDataTests", dependencies: ["TaskData", "Vision", "TensorCore", "Evaluation", "Engine", "Models", "TokenReduction", "Training", "TestSupport"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzHarness"]),
        .testTarget(
            name: "ServingTests",
            dependencies: ["Serving", "Engine", "Models", "TestSupport", .product(name: "HummingbirdTesting", package: "hummingbird")]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "SafeTensors", "TensorCore", "pdrop"]),
    ],
    swiftLanguageModes: [.v5]
)
