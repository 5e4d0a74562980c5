import FileAccess
import Foundation
import TensorCore

#if canImport(Glibc)
import Glibc
#endif

/// Where one tensor lives inside a safetensors file.
public struct SafeTensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let dataOffsets: Range<Int>
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file whose header has been validated completely, as the reference
/// library (huggingface safetensors) does: header length within the file, header valid UTF-8 and
/// well-formed JSON, every dtype known, byte ranges within the data section, sizes equal to
/// shape × dtype width, and the tensors filling the data section exactly: sorted by offsets,
/// each begins where the previous ends (the first at 0), no gaps, no overlaps, no trailing bytes.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The largest header we accept, as the reference implementation does (100 MB).
    public static let maximumHeaderLength: UInt64 = 100_000_000

    public let path: String
    public let entries: [String: SafeTensorsEntry]
    public let metadata: [String: String]
    /// File offset of the data section (8 + header length).
    public let dataStart: Int
    private let mapping: UnsafeMutableRawPointer?
    private let mappedLength: Int

    public var tensorNames: [String] { entries.keys.sorted() }

    public init(path: String) throws {
        self.path = path
        let descriptor = open(path, O_RDONLY)
        if descriptor < 0 { throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var status = stat()
        if fstat(descriptor, &status) != 0 {
            throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno)))
        }
        if (status.st_mode & S_IFMT) != S_IFREG {
            throw SafeTensorsError.cannotOpen(file: path, reason: "not a regular file")
        }
        let fileSize = Int(status.st_size)
        if fileSize < 8 { throw SafeTensorsError.fileTooSmall(file: path, size: fileSize) }
        guard let mapped = mmap(nil, fileSize, PROT_READ, MAP_PRIVATE, descriptor, 0), mapped != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        do {
            let header = try SafeTensorsFile.parseHeader(
                UnsafeRawBufferPointer(start: mapped, count: fileSize), file: path)
            entries = header.entries
            metadata = header.metadata
            dataStart = header.dataStart
        } catch {
            munmap(mapped, fileSize)
            throw error
        }
        mapping = mapped
        mappedLength = fileSize
    }

    deinit {
        if let mapping { munmap(mapping, mappedLength) }
    }

    public func entry(_ name: String) throws -> SafeTensorsEntry {
        guard let entry = entries[name] else { throw SafeTensorsError.tensorNotFound(file: path, tensor: name) }
        return entry
    }

    /// The tensor's bytes, straight from the mapping (valid while this file is alive).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let entry = try entry(name)
        return UnsafeRawBufferPointer(
            start: mapping.map { UnsafeRawPointer($0) + dataStart + entry.dataOffsets.lowerBound },
            count: entry.dataOffsets.count)
    }

    /// The tensor converted to fp32 (from F32, F16, BF16 or F64), with its shape.
    public func floatTensor(_ name: String) throws -> Tensor {
        let entry = try entry(name)
        let bytes = try rawBytes(name)
        let tensor = Tensor(shape: entry.shape)
        guard let source = bytes.baseAddress else { return tensor }
        switch entry.dtype {
        case .float32:
            UnsafeMutableRawPointer(tensor.pointer).copyMemory(from: source, byteCount: bytes.count)
        case .bfloat16:
            HalfPrecision.convertBFloat16(source, to: tensor.pointer, count: tensor.count)
        case .float16:
            HalfPrecision.convertFloat16(source, to: tensor.pointer, count: tensor.count)
        case .float64:
            for i in 0..<tensor.count {
                tensor.pointer[i] = Float(source.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
            }
        default:
            throw SafeTensorsError.unsupportedConversion(file: path, tensor: name, dtype: entry.dtype.rawValue, target: "fp32")
        }
        return tensor
    }

    /// The tensor's values as integers (from I64, I32, I16, I8, U8, U16, U32 or BOOL).
    public func integers(_ name: String) throws -> [Int] {
        let entry = try entry(name)
        let bytes = try rawBytes(name)
        let count = entry.elementCount
        func load<T: FixedWidthInteger>(_ type: T.Type) -> [Int] {
            (0..<count).map { Int(bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self)) }
        }
        switch entry.dtype {
        case .int64: return load(Int64.self)
        case .int32: return load(Int32.self)
        case .int16: return load(Int16.self)
        case .int8: return load(Int8.self)
        case .uint8, .bool: return load(UInt8.self)
        case .uint16: return load(UInt16.self)
        case .uint32: return load(UInt32.self)
        default:
            throw SafeTensorsError.unsupportedConversion(file: path, tensor: name, dtype: entry.dtype.rawValue, target: "integers")
        }
    }

    /// Validates the whole header of a file held in `bytes`; `file` names it in errors.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer, file: String) throws
        -> (entries: [String: SafeTensorsEntry], metadata: [String: String], dataStart: Int)
    {
        if bytes.count < 8 { throw SafeTensorsError.fileTooSmall(file: file, size: bytes.count) }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        if headerLength > UInt64(bytes.count - 8) || headerLength > maximumHeaderLength {
            throw SafeTensorsError.headerLengthOutOfRange(file: file, headerLength: headerLength, fileSize: bytes.count)
        }
        let dataStart = 8 + Int(headerLength)
        let dataLength = bytes.count - dataStart
        let headerData = Data(bytes[8..<dataStart])
        if let badByte = firstInvalidUTF8Offset(headerData) {
            throw SafeTensorsError.headerNotUTF8(file: file, fileOffset: 8 + badByte)
        }
        let document: HeaderDocument
        do {
            document = try JSONDecoder().decode(HeaderDocument.self, from: headerData)
        } catch let error as SafeTensorsHeaderEntryError {
            throw SafeTensorsError.invalidTensorEntry(file: file, tensor: error.tensor, reason: error.reason)
        } catch {
            throw SafeTensorsError.headerNotJSON(file: file, detail: describeDecodingError(error))
        }

        var entries: [String: SafeTensorsEntry] = [:]
        for (name, raw) in document.tensors {
            entries[name] = try validate(name: name, raw: raw, file: file, dataLength: dataLength, dataStart: dataStart)
        }
        let metadata = document.metadata

        try checkContiguous(entries.values, dataLength: dataLength, file: file, dataStart: dataStart)
        return (entries, metadata, dataStart)
    }

    /// The reference's layout rule: sorted by (begin, end), each tensor begins where the previous
    /// one ends (the first at 0) and the last ends at the end of the data section.
    private static func checkContiguous(
        _ entries: some Collection<SafeTensorsEntry>, dataLength: Int, file: String, dataStart: Int
    ) throws {
        let ordered = entries.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        var previous: SafeTensorsEntry?
        for entry in ordered {
            let expectedBegin = previous?.dataOffsets.upperBound ?? 0
            if let previous, entry.dataOffsets.lowerBound < expectedBegin {
                throw SafeTensorsError.overlappingTensors(
                    file: file, first: previous.name, second: entry.name, byteOffset: entry.dataOffsets.lowerBound)
            }
            if entry.dataOffsets.lowerBound > expectedBegin {
                throw SafeTensorsError.gapBeforeTensor(
                    file: file, previous: previous?.name, tensor: entry.name, gapBegin: expectedBegin,
                    gapEnd: entry.dataOffsets.lowerBound, dataStart: dataStart)
            }
            previous = entry
        }
        let tensorsEnd = previous?.dataOffsets.upperBound ?? 0
        if tensorsEnd != dataLength {
            throw SafeTensorsError.bytesAfterLastTensor(
                file: file, lastTensor: previous?.name, tensorsEnd: tensorsEnd, dataLength: dataLength, dataStart: dataStart)
        }
    }

    private static func validate(name: String, raw: RawHeaderEntry, file: String, dataLength: Int, dataStart: Int) throws
        -> SafeTensorsEntry
    {
        func invalid(_ reason: String) -> SafeTensorsError {
            .invalidTensorEntry(file: file, tensor: name, reason: reason)
        }
        guard let dtype = SafeTensorsDType(rawValue: raw.dtype) else {
            throw SafeTensorsError.unknownDType(file: file, tensor: name, dtype: raw.dtype)
        }
        if raw.shape.contains(where: { $0 < 0 }) { throw invalid("shape \(raw.shape) has a negative dimension") }
        guard raw.dataOffsets.count == 2 else { throw invalid("'data_offsets' \(raw.dataOffsets) is not a pair") }
        let begin = raw.dataOffsets[0], end = raw.dataOffsets[1]
        if begin < 0 || end < begin || end > dataLength {
            throw SafeTensorsError.offsetsOutOfRange(
                file: file, tensor: name, begin: begin, end: end, dataLength: dataLength, dataStart: dataStart)
        }
        var expectedBytes = dtype.byteWidth
        for dimension in raw.shape {
            let (product, overflow) = expectedBytes.multipliedReportingOverflow(by: dimension)
            if overflow { throw invalid("shape \(raw.shape) is too large") }
            expectedBytes = product
        }
        if expectedBytes != end - begin {
            throw SafeTensorsError.sizeMismatch(
                file: file, tensor: name, shape: raw.shape, dtype: raw.dtype, expectedBytes: expectedBytes,
                actualBytes: end - begin)
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: raw.shape, dataOffsets: begin..<end)
    }
}

/// One tensor's header entry as written; checked by `SafeTensorsFile.validate`.
struct RawHeaderEntry: Decodable {
    let dtype: String
    let shape: [Int]
    let dataOffsets: [Int]
    enum CodingKeys: String, CodingKey {
        case dtype, shape
        case dataOffsets = "data_offsets"
    }
}

/// A decoding failure inside one tensor's entry, kept apart from "the header is not JSON".
struct SafeTensorsHeaderEntryError: Error {
    let tensor: String
    let reason: String
}

/// The header: tensor entries plus the optional string map under `__metadata__`.
struct HeaderDocument: Decodable {
    var tensors: [String: RawHeaderEntry] = [:]
    var metadata: [String: String] = [:]

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys {
            do {
                if key.stringValue == "__metadata__" {
                    metadata = try container.decode([String: String].self, forKey: key)
                } else {
                    tensors[key.stringValue] = try container.decode(RawHeaderEntry.self, forKey: key)
                }
            } catch {
                throw SafeTensorsHeaderEntryError(tensor: key.stringValue, reason: describeDecodingError(error))
            }
        }
    }
}
