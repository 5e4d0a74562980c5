import Foundation
import SafeTensors
import Testing
import TensorCore
import TestSupport

/// The Q8_0 format against llama.cpp's own quantizer (gguf-py, bit-exact with ggml's
/// quantize_row_q8_0_ref), on the blocks of tools/reference/make_q8_0_fixtures.py: zeros, ties
/// at half a step, an fp16-subnormal scale, a scale near fp16's largest, an outlier.
@Suite struct Q8_0CheckpointTests {
    let fixture = Fixtures.url("q8_0/q8_0.safetensors").path

    @Test func quantizerIsLlamaCppsBitForBit() throws {
        let file = try SafeTensorsFile(path: fixture)
        let input = try file.floatTensor("input")
        let (values, scales) = Q8_0.quantize(input.pointer, count: input.count)
        let expectedValues = Array(try file.rawBytes("values").bindMemory(to: Int8.self))
        let expectedScales = Array(try file.rawBytes("scales").bindMemory(to: UInt16.self))
        #expect(values == expectedValues)
        #expect(scales == expectedScales)
        #expect(scales.contains(0) && scales.contains { $0 & 0x7C00 == 0 && $0 != 0 }, "the fixture has a zero and a subnormal scale")
    }

    @Test func dequantizedValuesAreLlamaCpps() throws {
        let file = try SafeTensorsFile(path: fixture)
        let input = try file.floatTensor("input")
        let matrix = WeightMatrix(quantizing: input)
        #expect(matrix.toTensor().toArray() == (try file.floatTensor("dequantized")).toArray())
    }
}
