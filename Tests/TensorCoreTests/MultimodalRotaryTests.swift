import Foundation
import TensorCore
import Testing
import TestSupport

/// Qwen2-VL's multimodal RoPE (frequencies split by `mrope_section` over temporal, height and width
/// positions) against transformers' Qwen2VLRotaryEmbedding on random queries and keys
/// (tools/reference/make_mrope_fixtures.py).
@Suite struct MultimodalRotaryTests {
    struct Fixture: Decodable {
        let head_dim: Int, heads: Int, tokens: Int, sections: [Int], theta: Double
        let positions: [[Int]]
        let query: [Float], rotated_query: [Float], key: [Float], rotated_key: [Float]
    }

    @Test func rotatesAsTransformersDoes() throws {
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: Fixtures.url("mrope.json")))
        let rotary = RotaryEmbedding(headDim: fixture.head_dim, theta: fixture.theta, sections: fixture.sections)
        #expect(rotary.axisOfFrequency == [0, 0, 1, 1, 1, 2, 2, 2])
        for (input, expected) in [(fixture.query, fixture.rotated_query), (fixture.key, fixture.rotated_key)] {
            var values = input  // (tokens, heads, headDim)
            values.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress!, tokens: fixture.tokens, heads: fixture.heads, positionAxes: fixture.positions) }
            let difference = zip(values, expected).map { abs($0 - $1) }.max() ?? .infinity
            #expect(difference < 1e-6, "largest difference \(difference)")
            // The inverse rotation brings the values back.
            values.withUnsafeMutableBufferPointer {
                rotary.apply($0.baseAddress!, tokens: fixture.tokens, heads: fixture.heads, positionAxes: fixture.positions, inverse: true)
            }
            #expect(zip(values, input).allSatisfy { abs($0 - $1) < 1e-5 })
        }
        // With every axis equal, the multimodal RoPE is plain RoPE.
        let plain = RotaryEmbedding(headDim: fixture.head_dim, theta: fixture.theta)
        var a = fixture.query, b = fixture.query
        let positions = Array(0..<fixture.tokens)
        a.withUnsafeMutableBufferPointer { rotary.apply($0.baseAddress!, tokens: fixture.tokens, heads: fixture.heads, positionAxes: [positions, positions, positions]) }
        b.withUnsafeMutableBufferPointer { plain.apply($0.baseAddress!, tokens: fixture.tokens, heads: fixture.heads, positions: positions) }
        #expect(a == b)
    }
}
