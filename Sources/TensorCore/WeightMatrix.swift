import CKernels
import Foundation

/// The element type a weight matrix is stored in.
public enum WeightStorageType: String, Sendable {
    case float32, bfloat16, float16

    public var byteWidth: Int { self == .float32 ? 4 : 2 }
}

/// How products with bf16 weights and many input rows (prefill, the vision tower) compute.
public enum ProductPrecision: String, Sendable, CaseIterable {
    /// Weights widened to fp32 exactly, fp32 products (OpenBLAS): the mode the parity tests use.
    case float32 = "fp32"
    /// Inputs rounded to bf16, bf16 × bf16 products summed in fp32 (`BFloat16Products`, AVX512-BF16),
    /// as llama.cpp and oneDNN compute; about twice the rate. fp32 where the CPU lacks the instructions.
    case bfloat16 = "bf16"
}

/// A (rows, columns) weight matrix in PyTorch's (out_features, in_features) layout, kept in the
/// type it is stored in (usually straight from a memory-mapped checkpoint), computed in fp32.
///
/// A 7B model in bf16 is 14 GB; in fp32 it would not fit in 24 GB. Products with many input rows
/// (prefill) convert one panel of rows to fp32 at a time, cache-sized, right before BLAS uses it;
/// products with a few input rows (decode) read the half-precision rows directly and widen them
/// in registers, so a decode step reads each weight byte once.
public final class WeightMatrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    public let storageType: WeightStorageType
    /// (rows, columns) elements of `storageType`, row-major.
    public let base: UnsafeRawPointer
    /// Keeps the memory alive: the mapped file, the tensor, or nil for an owned allocation.
    private let owner: AnyObject?
    private let ownedAllocation: UnsafeMutableRawPointer?

    /// The precision of prefill products with bf16 weights; set once at start (`--compute`).
    nonisolated(unsafe) public static var productPrecision = ProductPrecision.float32

    /// Input rows up to which products read half-precision weights directly (no panel conversion).
    public static let directRowLimit = 8
    /// Elements converted per panel in prefill (4 MB of fp32: stays in cache while BLAS reads it).
    static let panelElements = 1 << 20

    /// A view of memory owned by `owner` (e.g. a memory-mapped safetensors file).
    public init(borrowing base: UnsafeRawPointer, type: WeightStorageType, rows: Int, columns: Int, owner: AnyObject) {
        self.base = base
        self.storageType = type
        self.rows = rows
        self.columns = columns
        self.owner = owner
        self.ownedAllocation = nil
    }

    /// Shares an fp32 tensor of shape (rows, columns).
    public convenience init(_ tensor: Tensor) {
        precondition(tensor.shape.count == 2, "a weight matrix is 2-D, got \(tensor.shape)")
        self.init(borrowing: UnsafeRawPointer(tensor.pointer), type: .float32, rows: tensor.shape[0], columns: tensor.shape[1], owner: tensor)
    }

    /// A new uninitialised matrix of its own; `fill` writes its bytes.
    public init(allocating type: WeightStorageType, rows: Int, columns: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        let allocation = UnsafeMutableRawPointer.allocate(byteCount: max(rows * columns * type.byteWidth, 1), alignment: 64)
        fill(allocation)
        self.base = UnsafeRawPointer(allocation)
        self.storageType = type
        self.rows = rows
        self.columns = columns
        self.owner = nil
        self.ownedAllocation = allocation
    }

    deinit { ownedAllocation?.deallocate() }

    public var byteCount: Int { rows * columns * storageType.byteWidth }

    /// destination(count) = fp32 of elements [first, first + count) in row-major order.
    public func convert(from first: Int, count: Int, to destination: UnsafeMutablePointer<Float>) {
        let source = base + first * storageType.byteWidth
        switch storageType {
        case .float32: destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
        case .bfloat16: HalfPrecision.convertBFloat16(source, to: destination, count: count)
        case .float16: HalfPrecision.convertFloat16(source, to: destination, count: count)
        }
    }

    /// destination(columns) = row `row` in fp32.
    public func copyRow(_ row: Int, to destination: UnsafeMutablePointer<Float>) {
        convert(from: row * columns, count: columns, to: destination)
    }

    /// The whole matrix as an fp32 tensor (rows, columns).
    public func toTensor() -> Tensor {
        let tensor = Tensor(shape: [rows, columns])
        convert(from: 0, count: rows * columns, to: tensor.pointer)
        return tensor
    }

    /// output(inputRows, rows) = input(inputRows, columns) · selfᵀ, at `precision` for bf16
    /// weights and many input rows (fp32 where the CPU lacks bf16 products).
    public func multiply(
        _ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, inputRows: Int,
        precision: ProductPrecision = WeightMatrix.productPrecision
    ) {
        if inputRows == 0 || rows == 0 { return }
        if inputRows <= WeightMatrix.directRowLimit {
            multiplyDirect(output, input, inputRows: inputRows)
        } else if storageType == .bfloat16 && precision == .bfloat16 && BFloat16Products.isAvailable {
            BFloat16Products.multiply(output, input, bfloat16Weights: base, m: inputRows, n: rows, k: columns)
        } else if storageType == .float32 {
            BLAS.matmulTransposedB(output, input, base.assumingMemoryBound(to: Float.self), m: inputRows, n: rows, k: columns)
        } else {
            multiplyByPanels(output, input, inputRows: inputRows)
        }
    }

    /// Few input rows: each thread takes a range of weight rows, widens them in registers (half
    /// types) and dots them with every input row while the weight row is in L1. bf16 goes through
    /// `pd_dot_rows_bf16` (four rows at a time, AVX-512 or AVX2 chosen at run time).
    private func multiplyDirect(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, inputRows: Int) {
        let columns = self.columns, rows = self.rows, base = self.base
        let width = storageType.byteWidth, type = storageType
        ThreadPool.parallelFor(rows, minimumPerThread: 64, chunksPerThread: 8) { range in
            if type == .bfloat16 {
                pd_dot_rows_bf16(base.assumingMemoryBound(to: UInt16.self), range.lowerBound, range.count, columns,
                                 input, inputRows, output, rows)
                return
            }
            for row in range {
                let weights = base + row * columns * width
                for inputRow in 0..<inputRows {
                    let x = input + inputRow * columns
                    switch type {
                    case .bfloat16: preconditionFailure("bf16 rows go through pd_dot_rows_bf16")
                    case .float16: output[inputRow * rows + row] = dotFloat16(weights, x, count: columns)
                    case .float32: output[inputRow * rows + row] = dot(weights.assumingMemoryBound(to: Float.self), x, count: columns)
                    }
                }
            }
        }
    }

    /// Many input rows: convert a panel of weight rows to fp32 (both cores), then one sgemm per panel
    /// writes the panel's output columns.
    private func multiplyByPanels(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, inputRows: Int) {
        let panelRows = max(16, min(rows, WeightMatrix.panelElements / max(columns, 1)))
        let panel = UnsafeMutablePointer<Float>.allocate(capacity: panelRows * columns)  // (panelRows, columns) fp32
        defer { panel.deallocate() }
        var first = 0
        while first < rows {
            let count = min(panelRows, rows - first)
            let elements = count * columns, start = first * columns
            ThreadPool.parallelFor(elements, minimumPerThread: 1 << 16) { range in
                self.convert(from: start + range.lowerBound, count: range.count, to: panel + range.lowerBound)
            }
            BLAS.gemm(
                transposeA: false, transposeB: true, m: inputRows, n: count, k: columns, alpha: 1,
                a: input, lda: columns, b: panel, ldb: columns, beta: 0, c: output + first, ldc: rows)
            first += count
        }
    }
}

/// Σ fp16 weights(count) · x(count), widening in registers (F16C with a target CPU).
@inline(__always)
func dotFloat16(_ weights: UnsafeRawPointer, _ x: UnsafePointer<Float>, count: Int) -> Float {
    var sum0 = SIMD8<Float>(), sum1 = SIMD8<Float>()
    var index = 0
    @inline(__always) func widen(_ offset: Int) -> SIMD8<Float> {
        SIMD8<Float>(weights.loadUnaligned(fromByteOffset: offset * 2, as: SIMD8<Float16>.self))
    }
    @inline(__always) func load(_ offset: Int) -> SIMD8<Float> {
        UnsafeRawPointer(x + offset).loadUnaligned(as: SIMD8<Float>.self)
    }
    while index + 16 <= count {
        sum0.addProduct(widen(index), load(index))
        sum1.addProduct(widen(index + 8), load(index + 8))
        index += 16
    }
    while index + 8 <= count {
        sum0.addProduct(widen(index), load(index))
        index += 8
    }
    var total = (sum0 + sum1).sum()
    while index < count {
        total += HalfPrecision.floatFromFloat16(weights.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)) * x[index]
        index += 1
    }
    return total
}
