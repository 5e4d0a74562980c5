import Foundation
import TensorCore

/// Writes safetensors files: an 8-byte little-endian header length, a JSON header padded with
/// spaces to a multiple of 8 bytes, then the tensors' bytes back to back in header order.
public enum SafeTensorsWriter {
    public struct Item {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        public let bytes: Data

        public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// An fp32 tensor stored as F32, BF16 (round to nearest even) or F16.
        public init(name: String, tensor: Tensor, dtype: SafeTensorsDType = .float32) {
            var data = Data(capacity: tensor.count * dtype.byteWidth)
            switch dtype {
            case .bfloat16:
                for value in tensor.buffer { withUnsafeBytes(of: HalfPrecision.bfloat16FromFloat(value).littleEndian) { data.append(contentsOf: $0) } }
            case .float16:
                for value in tensor.buffer { withUnsafeBytes(of: Float16(value).bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            default:
                precondition(dtype == .float32, "a Tensor is stored as F32, BF16 or F16, not \(dtype.rawValue)")
                data.append(UnsafeBufferPointer(start: tensor.pointer, count: tensor.count))
            }
            self.init(name: name, dtype: dtype, shape: tensor.shape, bytes: data)
        }

        /// Integers stored as I64.
        public init(name: String, integers: [Int], shape: [Int]? = nil) {
            var data = Data(capacity: integers.count * 8)
            for value in integers { withUnsafeBytes(of: Int64(value).littleEndian) { data.append(contentsOf: $0) } }
            self.init(name: name, dtype: .int64, shape: shape ?? [integers.count], bytes: data)
        }
    }

    /// The complete file contents for `items`, sorted by name as the reference writer does.
    public static func serialize(_ items: [Item], metadata: [String: String] = [:]) throws -> Data {
        let sorted = items.sorted { $0.name < $1.name }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for item in sorted {
            header[item.name] = [
                "dtype": item.dtype.rawValue, "shape": item.shape, "data_offsets": [offset, offset + item.bytes.count],
            ] as [String: Any]
            offset += item.bytes.count
        }
        var headerBytes = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var file = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(headerBytes)
        for item in sorted { file.append(item.bytes) }
        return file
    }

    public static func write(_ items: [Item], metadata: [String: String] = [:], to url: URL) throws {
        try serialize(items, metadata: metadata).write(to: url, options: .atomic)
    }
}
