/// A contiguous, row-major fp32 tensor that owns its storage.
///
/// Kernels take raw pointers and explicit sizes (llm.c style), so a tensor is little more than
/// an allocation with a shape; `pointer` is what the kernels read and write.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    /// Number of elements: the product of `shape`.
    public let count: Int
    /// (count,) elements in row-major order over `shape`.
    public let pointer: UnsafeMutablePointer<Float>

    /// A zero-filled tensor.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        // 64-byte alignment keeps SIMD loads and BLAS on cache-line boundaries.
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    /// Size of dimension `axis`; negative axes count from the end.
    public func size(_ axis: Int) -> Int { shape[axis < 0 ? shape.count + axis : axis] }

    /// Scoped access to the elements: the tensor is kept alive for the whole of `body`, which a
    /// bare `pointer` read from a temporary does not promise.
    public func withPointer<Result>(_ body: (UnsafeMutablePointer<Float>) throws -> Result) rethrows -> Result {
        try withExtendedLifetime(self) { try body(pointer) }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    public func toArray() -> [Float] { Array(buffer) }

    /// A copy of rows `rows` of a 2-D tensor, as a new (rows.count, columns) tensor.
    public func copyRows(_ rows: Range<Int>) -> Tensor {
        precondition(shape.count == 2 && rows.lowerBound >= 0 && rows.upperBound <= shape[0])
        let columns = shape[1]
        let result = Tensor(shape: [rows.count, columns])
        result.pointer.update(from: pointer + rows.lowerBound * columns, count: rows.count * columns)
        return result
    }

    /// A new tensor with the same shape and values.
    public func copy() -> Tensor {
        let result = Tensor(shape: shape)
        result.pointer.update(from: pointer, count: count)
        return result
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) {
        pointer.update(repeating: value, count: count)
    }
}
