import Foundation
import TensorCore

/// Random parameters of any shape, generated in memory, for benchmarks without a checkpoint:
/// matrices in bf16 (as checkpoints ship) or those bf16 values in Q8_0 (as `pdrop quantize` writes
/// them), uniform in ±1/sqrt(columns) so activations stay in range through the norms; norm
/// weights near 1; biases are absent unless required.
public final class RandomWeightSource: WeightSource {
    private let seed: UInt64
    private let storage: WeightStorageType
    private var counter: UInt64 = 0

    /// `storage`: .bfloat16 or .q8_0 (matrices whose columns are not a multiple of 32 stay bf16).
    public init(seed: UInt64 = 0, storage: WeightStorageType = .bfloat16) {
        precondition(storage == .bfloat16 || storage == .q8_0, "random matrices are bf16 or Q8_0, not \(storage)")
        self.seed = seed
        self.storage = storage
    }

    public func contains(_ name: String) -> Bool { !name.hasSuffix(".bias") }

    public func take(_ name: String, shape: [Int]) -> Tensor {
        let tensor = Tensor(shape: shape)
        let isNorm = name.contains("norm") && name.hasSuffix(".weight")
        let scale: Float = isNorm ? 0.1 : 0.02
        var state = nextSeed()
        for index in 0..<tensor.count {
            tensor[index] = (isNorm ? 1 : 0) + scale * RandomWeightSource.uniform(&state)
        }
        return tensor
    }

    public func takeMatrix(_ name: String, rows: Int, columns: Int) -> WeightMatrix {
        let scale = 1 / Float(max(columns, 1)).squareRoot()
        let seed = nextSeed()
        let bfloat16 = WeightMatrix(allocating: .bfloat16, rows: rows, columns: columns) { destination in
            let halves = destination.bindMemory(to: UInt16.self, capacity: rows * columns)
            ThreadPool.parallelFor(rows, minimumPerThread: 64) { range in
                var state = seed &+ UInt64(range.lowerBound) &* 0x9E3779B97F4A7C15
                for index in (range.lowerBound * columns)..<(range.upperBound * columns) {
                    halves[index] = HalfPrecision.bfloat16FromFloat(scale * RandomWeightSource.uniform(&state))
                }
            }
        }
        if storage == .q8_0 && columns % Q8_0.blockSize == 0 { return WeightMatrix(quantizing: bfloat16.toTensor()) }
        return bfloat16
    }

    private func nextSeed() -> UInt64 {
        counter += 1
        return (seed &* 6364136223846793005) ^ (counter &* 0x9E3779B97F4A7C15) | 1
    }

    /// A uniform value in [-1, 1) from a xorshift64 state.
    @inline(__always)
    public static func uniform(_ state: inout UInt64) -> Float {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Float(bitPattern: 0x3F80_0000 | UInt32(truncatingIfNeeded: state >> 41)) * 2 - 3
    }
}
