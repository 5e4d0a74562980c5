import CKernels
import Foundation

/// The element type a weight matrix is stored in.
public enum WeightStorageType: String, Sendable {
    case float32, bfloat16, float16
    /// GGUF's Q8_0: int8 values with one fp16 scale per 32 consecutive values of a row (`Q8_0`).
    case q8_0

    /// Bytes per element of the values (Q8_0's scales aside).
    public var byteWidth: Int {
        switch self {
        case .float32: 4
        case .bfloat16, .float16: 2
        case .q8_0: 1
        }
    }
}

/// GGUF's Q8_0 block format: each run of 32 values of a row is stored as 32 int8 values q and one
/// fp16 scale d, the value being d · q (ggml's `block_q8_0`, kept here as two arrays so that the
/// int8 values stay a row-major matrix).
public enum Q8_0 {
    public static let blockSize = 32

    /// values(count) → (q(count), d(count / 32) fp16 bits), as ggml's quantize_row_q8_0_ref;
    /// `count` must be a multiple of 32.
    public static func quantize(_ values: UnsafePointer<Float>, count: Int) -> (values: [Int8], scales: [UInt16]) {
        precondition(count % blockSize == 0, "Q8_0 quantizes whole blocks of \(blockSize) values, got \(count)")
        var quantized = [Int8](repeating: 0, count: count), scales = [UInt16](repeating: 0, count: count / blockSize)
        quantized.withUnsafeMutableBufferPointer { q in
            scales.withUnsafeMutableBufferPointer { d in pd_quantize_q8_0(values, count, q.baseAddress, d.baseAddress) }
        }
        return (quantized, scales)
    }
}

/// How products with bf16 (or Q8_0) weights and many input rows (prefill, the vision tower) compute.
public enum ProductPrecision: String, Sendable, CaseIterable {
    /// Weights widened to fp32 exactly, fp32 products (OpenBLAS): the mode the parity tests use.
    case float32 = "fp32"
    /// Inputs rounded to bf16, bf16 × bf16 products summed in fp32 (`BFloat16Products`, AVX512-BF16),
    /// as llama.cpp and oneDNN compute; about twice the rate. fp32 where the CPU lacks the instructions.
    /// Decode products with bf16 weights stay exact (rounding the input too measured no faster:
    /// decode is bound by reading the weights). With Q8_0 weights: prefill as bf16 (weights widened
    /// to bf16), decode with the input rows quantized to Q8_0 and int8 products (as llama.cpp), on
    /// any CPU with AVX2.
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
    /// (rows, columns / 32) fp16 scales of Q8_0 values (nil for the other types).
    public let scales: UnsafeRawPointer?
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
    /// Q8_0 needs `scales` and columns that are a multiple of 32.
    public init(
        borrowing base: UnsafeRawPointer, type: WeightStorageType, rows: Int, columns: Int, scales: UnsafeRawPointer? = nil,
        owner: AnyObject
    ) {
        precondition((type == .q8_0) == (scales != nil), "scales go with Q8_0 weights and only with them")
        precondition(type != .q8_0 || columns % Q8_0.blockSize == 0, "Q8_0 rows hold whole blocks of 32, got \(columns) columns")
        self.base = base
        self.scales = scales
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
        precondition(type != .q8_0, "Q8_0 matrices are made by WeightMatrix(quantizing:)")
        let allocation = UnsafeMutableRawPointer.allocate(byteCount: max(rows * columns * type.byteWidth, 1), alignment: 64)
        fill(allocation)
        self.base = UnsafeRawPointer(allocation)
        self.scales = nil
        self.storageType = type
        self.rows = rows
        self.columns = columns
        self.owner = nil
        self.ownedAllocation = allocation
    }

    /// The Q8_0 quantization of an fp32 tensor (rows, columns), columns a multiple of 32.
    public convenience init(quantizing tensor: Tensor) {
        precondition(tensor.shape.count == 2, "a weight matrix is 2-D, got \(tensor.shape)")
        let (values, scales) = Q8_0.quantize(tensor.pointer, count: tensor.count)
        let storage = QuantizedStorage(values: values, scales: scales)
        self.init(
            borrowing: storage.values.baseAddress!, type: .q8_0, rows: tensor.shape[0], columns: tensor.shape[1],
            scales: storage.scales.baseAddress!, owner: storage)
    }

    deinit { ownedAllocation?.deallocate() }

    /// Bytes a product reads: the values, and Q8_0's scales.
    public var byteCount: Int {
        rows * columns * storageType.byteWidth + (storageType == .q8_0 ? rows * columns / Q8_0.blockSize * 2 : 0)
    }

    /// The precision products with many input rows compute in for this matrix: bf16 where
    /// `productPrecision` asks for it, the weights are bf16 or Q8_0 and the CPU has AVX512-BF16;
    /// fp32 otherwise (as `multiply` chooses).
    public var manyRowPrecision: ProductPrecision {
        WeightMatrix.productPrecision == .bfloat16 && (storageType == .bfloat16 || storageType == .q8_0) && BFloat16Products.isAvailable
            ? .bfloat16 : .float32
    }

    /// destination(count) = fp32 of elements [first, first + count) in row-major order.
    public func convert(from first: Int, count: Int, to destination: UnsafeMutablePointer<Float>) {
        let source = base + first * storageType.byteWidth
        switch storageType {
        case .float32: destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
        case .bfloat16: HalfPrecision.convertBFloat16(source, to: destination, count: count)
        case .float16: HalfPrecision.convertFloat16(source, to: destination, count: count)
        case .q8_0:
            pd_dequantize_q8_0(
                base.assumingMemoryBound(to: Int8.self), scales!.assumingMemoryBound(to: UInt16.self), first, count, destination)
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
            if storageType == .q8_0 && precision == .bfloat16 {
                multiplyQuantizingInput(output, input, inputRows: inputRows)
            } else {
                multiplyDirect(output, input, inputRows: inputRows)
            }
        } else if storageType == .bfloat16 && precision == .bfloat16 && BFloat16Products.isAvailable {
            BFloat16Products.multiply(output, input, bfloat16Weights: base, m: inputRows, n: rows, k: columns)
        } else if storageType == .q8_0 && precision == .bfloat16 && BFloat16Products.isAvailable {
            BFloat16Products.multiply(
                output, input, q8_0Values: base.assumingMemoryBound(to: Int8.self), scales: scales!.assumingMemoryBound(to: UInt16.self),
                m: inputRows, n: rows, k: columns)
        } else if storageType == .float32 {
            BLAS.matmulTransposedB(output, input, base.assumingMemoryBound(to: Float.self), m: inputRows, n: rows, k: columns)
        } else {
            multiplyByPanels(output, input, inputRows: inputRows)
        }
    }

    /// Few input rows: each thread takes a range of weight rows, widens them in registers (half
    /// types) and dots them with every input row while the weight row is in L1. bf16 goes through
    /// `pd_dot_rows_bf16` (one row at a time as one sequential stream, AVX-512 or AVX2 chosen at run time).
    private func multiplyDirect(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, inputRows: Int) {
        let columns = self.columns, rows = self.rows, base = self.base
        let width = storageType.byteWidth, type = storageType
        let scales = self.scales
        ThreadPool.parallelFor(rows, minimumPerThread: 64, chunksPerThread: 8) { range in
            switch type {
            case .bfloat16:
                pd_dot_rows_bf16(base.assumingMemoryBound(to: UInt16.self), range.lowerBound, range.count, columns,
                                 input, inputRows, output, rows)
                return
            case .q8_0:
                pd_dot_rows_q8_0(base.assumingMemoryBound(to: Int8.self), scales!.assumingMemoryBound(to: UInt16.self),
                                 range.lowerBound, range.count, columns, input, inputRows, output, rows)
                return
            case .float16, .float32: break
            }
            for row in range {
                let weights = base + row * columns * width
                for inputRow in 0..<inputRows {
                    let x = input + inputRow * columns
                    output[inputRow * rows + row] = type == .float16
                        ? dotFloat16(weights, x, count: columns) : dot(weights.assumingMemoryBound(to: Float.self), x, count: columns)
                }
            }
        }
    }

    /// Few input rows with Q8_0 weights in the fast mode (`--compute bf16`): the input rows are
    /// quantized to Q8_0 too and each block's products summed in int32 (VPDPBUSD), as llama.cpp
    /// computes Q8_0 products; about three times fewer instructions than widening the weights.
    private func multiplyQuantizingInput(_ output: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, inputRows: Int) {
        let columns = self.columns, rows = self.rows
        let (quantized, halfScales) = Q8_0.quantize(input, count: inputRows * columns)  // (inputRows, columns), (inputRows, blocks)
        let scales = halfScales.map { Float(Float16(bitPattern: $0)) }  // (inputRows, blocks) fp32
        let values = base.assumingMemoryBound(to: Int8.self), weightScales = self.scales!.assumingMemoryBound(to: UInt16.self)
        quantized.withUnsafeBufferPointer { xq in
            scales.withUnsafeBufferPointer { xd in
                ThreadPool.parallelFor(rows, minimumPerThread: 64, chunksPerThread: 8) { range in
                    pd_dot_rows_q8_0_q8(values, weightScales, range.lowerBound, range.count, columns, xq.baseAddress, xd.baseAddress,
                                        inputRows, output, rows)
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

/// The arrays a quantized matrix made in memory borrows.
private final class QuantizedStorage {
    let values: UnsafeMutableBufferPointer<Int8>  // (rows · columns)
    let scales: UnsafeMutableBufferPointer<UInt16>  // (rows · columns / 32) fp16 bits

    init(values: [Int8], scales: [UInt16]) {
        self.values = .allocate(capacity: max(values.count, 1))
        self.scales = .allocate(capacity: max(scales.count, 1))
        _ = self.values.initialize(from: values)
        _ = self.scales.initialize(from: scales)
    }

    deinit {
        values.deallocate()
        scales.deallocate()
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
