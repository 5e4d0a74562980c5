/// Everything that can be wrong with a safetensors file or a sharded checkpoint. Each case
/// names the file and, where there is one, the tensor and the byte offset.
public enum SafeTensorsError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(file: String, reason: String)
    /// Smaller than the 8-byte header length prefix.
    case fileTooSmall(file: String, size: Int)
    /// The header length read from bytes 0..<8 points past the end of the file.
    case headerLengthOutOfRange(file: String, headerLength: UInt64, fileSize: Int)
    /// `fileOffset` is the first byte (counted from the start of the file) that is not valid UTF-8.
    case headerNotUTF8(file: String, fileOffset: Int)
    case headerNotJSON(file: String, detail: String)
    case invalidTensorEntry(file: String, tensor: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    /// Offsets relative to the data section, which starts at byte `dataStart` of the file.
    case offsetsOutOfRange(file: String, tensor: String, begin: Int, end: Int, dataLength: Int, dataStart: Int)
    case sizeMismatch(file: String, tensor: String, shape: [Int], dtype: String, expectedBytes: Int, actualBytes: Int)
    case overlappingTensors(file: String, first: String, second: String, byteOffset: Int)
    /// Unused data bytes `gapBegin..<gapEnd` (relative to the data section, which starts at byte
    /// `dataStart` of the file) before `tensor`; `previous` is the tensor before the gap, nil
    /// when the gap opens the data section.
    case gapBeforeTensor(file: String, previous: String?, tensor: String, gapBegin: Int, gapEnd: Int, dataStart: Int)
    /// The tensors end at data byte `tensorsEnd` but the data section holds `dataLength` bytes
    /// (the reference's "MetadataIncompleteBuffer"); `lastTensor` is nil when there are none.
    case bytesAfterLastTensor(file: String, lastTensor: String?, tensorsEnd: Int, dataLength: Int, dataStart: Int)
    case tensorNotFound(file: String, tensor: String)
    case unsupportedConversion(file: String, tensor: String, dtype: String, target: String)
    case invalidShardIndex(file: String, reason: String)
    case duplicateTensor(tensor: String, files: [String])
    case noSafetensorsFiles(directory: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "\(file): cannot open: \(reason)"
        case let .fileTooSmall(file, size):
            return "\(file): \(size) bytes is too small for a safetensors file (needs an 8-byte header length first)"
        case let .headerLengthOutOfRange(file, headerLength, fileSize):
            return "\(file): header length \(headerLength) at byte 0 runs past the end of the \(fileSize)-byte file"
        case let .headerNotUTF8(file, fileOffset):
            return "\(file): the header (from byte 8) is not valid UTF-8 (first bad byte at file byte \(fileOffset))"
        case let .headerNotJSON(file, detail):
            return "\(file): the header (from byte 8) is not a JSON object: \(detail)"
        case let .invalidTensorEntry(file, tensor, reason):
            return "\(file): tensor '\(tensor)': \(reason)"
        case let .unknownDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case let .offsetsOutOfRange(file, tensor, begin, end, dataLength, dataStart):
            return "\(file): tensor '\(tensor)' data_offsets [\(begin), \(end)] (file bytes \(dataStart + begin)..<\(dataStart + end)) are outside the \(dataLength)-byte data section starting at byte \(dataStart)"
        case let .sizeMismatch(file, tensor, shape, dtype, expectedBytes, actualBytes):
            return "\(file): tensor '\(tensor)' of shape \(shape) and dtype \(dtype) needs \(expectedBytes) bytes but its data_offsets span \(actualBytes)"
        case let .overlappingTensors(file, first, second, byteOffset):
            return "\(file): tensors '\(first)' and '\(second)' overlap at data byte \(byteOffset)"
        case let .gapBeforeTensor(file, previous, tensor, gapBegin, gapEnd, dataStart):
            let after = previous.map { "between tensors '\($0)' and '\(tensor)'" } ?? "before the first tensor '\(tensor)'"
            return "\(file): \(gapEnd - gapBegin) unused bytes \(after): data bytes \(gapBegin)..<\(gapEnd) (file bytes \(dataStart + gapBegin)..<\(dataStart + gapEnd)); safetensors data must be contiguous"
        case let .bytesAfterLastTensor(file, lastTensor, tensorsEnd, dataLength, dataStart):
            let end = lastTensor.map { "the last tensor '\($0)' ends at data byte \(tensorsEnd)" } ?? "the header lists no tensors"
            return "\(file): \(end) but the data section holds \(dataLength) bytes: \(dataLength - tensorsEnd) bytes after the tensors (file bytes \(dataStart + tensorsEnd)..<\(dataStart + dataLength)); safetensors data must end with the last tensor"
        case let .tensorNotFound(file, tensor):
            return "\(file): no tensor named '\(tensor)'"
        case let .unsupportedConversion(file, tensor, dtype, target):
            return "\(file): tensor '\(tensor)' has dtype \(dtype), which cannot be read as \(target)"
        case let .invalidShardIndex(file, reason):
            return "\(file): \(reason)"
        case let .duplicateTensor(tensor, files):
            return "tensor '\(tensor)' appears in more than one file: \(files.joined(separator: ", "))"
        case let .noSafetensorsFiles(directory):
            return "\(directory): no model.safetensors, model.safetensors.index.json or other *.safetensors file"
        }
    }
}
