import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import Vision

/// Qwen2-VL's and Qwen2.5-VL's vision towers against transformers on tools/reference/make_qwen2vl_fixtures.py's
/// tiny random checkpoints (Qwen2.5-VL's: window attention in blocks 0 and 2, full in 1 and 3): two photographs of different grids (12 × 18 and 20 × 8 patches) through our
/// image processor, then every block's output and the merged tokens.
@Suite struct Qwen2VLVisionTowerTests {
    @Test(arguments: ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
    func everyBlockAndTheMergedTokensMatchTransformers(_ name: String) throws {
        let directory = Fixtures.url(name)
        let model = try #require(try LoadedModel.load(directory: directory).visionLanguageModel as? Qwen2VLModel)
        let tower = model.visionTower, configuration = tower.configuration
        let reference = try SafeTensorsFile(path: directory.appendingPathComponent("reference.safetensors").path)

        let processor = Qwen2VLImageProcessor(config: try Qwen2VLImageProcessorConfig.load(contentsOf: directory.appendingPathComponent("preprocessor_config.json")))
        let images = ["images/chelsea.jpg", "qwen2-vl-images/chelsea_portrait.png"].map { Fixtures.url($0) }
        let processed = try images.map { try processor.preprocess(try ImageDecoder.decode(contentsOf: $0)) }
        let grids = processed.map { MultimodalRotaryPositions.ImageGrid(frames: $0.gridT, rows: $0.gridH, columns: $0.gridW) }
        #expect(try reference.integers("image_grid_thw") == processed.flatMap { [$0.gridT, $0.gridH, $0.gridW] })
        let rows = processed.map { $0.gridT * $0.gridH * $0.gridW }.reduce(0, +)
        let pixelValues = Tensor(shape: [rows, configuration.patchDimension], values: processed.flatMap(\.values))  // (patches, 3·2·14·14)

        var blockDifferences: [Float] = []
        let merged = tower.forward(pixelValues: pixelValues, grids: grids) { index, states in
            guard let expected = try? reference.floatTensor("vision.block.\(index)") else { return }
            let scale = max(1, expected.buffer.map(abs).max() ?? 0)
            blockDifferences.append(maxAbsoluteDifference(states, expected) / scale)
        }
        #expect(blockDifferences.count == configuration.depth)
        #expect(blockDifferences.allSatisfy { $0 < 1e-5 }, "per-block relative differences \(blockDifferences)")
        let expected = try reference.floatTensor("vision.merged")
        #expect(merged.shape == expected.shape)
        let difference = maxAbsoluteDifference(merged, expected)
        #expect(difference < 1e-4, "merged tokens differ by \(difference)")
        print("\(name) vision: blocks \(blockDifferences) (relative), merged \(difference) (absolute)")
    }
}
