import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import Vision

/// Qwen2-VL's vision tower against transformers on tools/reference/make_qwen2vl_fixtures.py's tiny
/// random checkpoint: two photographs of different grids (12 × 18 and 20 × 8 patches) through our
/// image processor, then every block's output and the merged tokens.
@Suite struct Qwen2VLVisionTowerTests {
    @Test func everyBlockAndTheMergedTokensMatchTransformers() throws {
        let directory = Fixtures.url("tiny-qwen2-vl")
        struct Config: Decodable {
            let vision_config: Qwen2VLVisionConfiguration
        }
        let configuration = try JSONDecoder().decode(Config.self, from: Data(contentsOf: directory.appendingPathComponent("config.json"))).vision_config
        try configuration.validate(file: "config.json")
        let tower = Qwen2VLVisionTower(configuration: configuration, loader: WeightLoader(checkpoint: try Checkpoint(directory: directory)), prefix: "visual.")
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
        print("tiny-qwen2-vl vision: blocks \(blockDifferences) (relative), merged \(difference) (absolute)")
    }
}
