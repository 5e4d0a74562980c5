import Foundation
import Models
import Testing
import TestSupport

/// Qwen2-VL's 3-D rotary positions against transformers' `get_rope_index`
/// (tools/reference/make_qwen2vl_position_fixtures.py): images of several grids, text before,
/// between and after them.
@Suite struct MultimodalRotaryPositionTests {
    struct Case: Decodable {
        let is_image: [Bool]
        let grids: [[Int]]
        let merge_size: Int
        let positions: [[Int]]  // (3, tokens)
        let rope_delta: Int
    }

    @Test func positionsAndDeltaMatchTransformers() throws {
        struct File: Decodable { let cases: [Case] }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: Fixtures.url("qwen2-vl-positions.json")))
        #expect(file.cases.count == 4)
        for (number, fixture) in file.cases.enumerated() {
            let grids = fixture.grids.map { MultimodalRotaryPositions.ImageGrid(frames: $0[0], rows: $0[1], columns: $0[2]) }
            let positions = try MultimodalRotaryPositions(isImageToken: fixture.is_image, grids: grids, mergeSize: fixture.merge_size)
            #expect(positions.positions.axes == fixture.positions, "case \(number)")
            #expect(positions.ropeDelta == fixture.rope_delta, "case \(number)")
        }
    }

    @Test func imageTokensThatDoNotMatchTheGridsAreRefused() {
        let grid = MultimodalRotaryPositions.ImageGrid(frames: 1, rows: 4, columns: 4)  // 4 tokens after a 2 × 2 merge
        #expect(throws: MultimodalRotaryPositions.MismatchError.self) {
            try MultimodalRotaryPositions(isImageToken: [false, true, true, true, false], grids: [grid], mergeSize: 2)
        }
        #expect(throws: MultimodalRotaryPositions.MismatchError.self) {
            try MultimodalRotaryPositions(isImageToken: [false, false], grids: [grid], mergeSize: 2)
        }
        #expect(throws: MultimodalRotaryPositions.MismatchError.self) {
            try MultimodalRotaryPositions(isImageToken: [true, true, true, true, true, true, true, true], grids: [grid], mergeSize: 2)
        }
    }
}
