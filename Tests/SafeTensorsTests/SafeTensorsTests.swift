import Foundation
import SafeTensors
import TensorCore
import Testing
import TestSupport

/// A file made of an explicit header length, header text and data bytes: the shapes a broken
/// writer or a truncated download produce.
func rawFile(headerLength: UInt64? = nil, header: String, data: [UInt8]) -> Data {
    var file = Data()
    let headerBytes = Data(header.utf8)
    withUnsafeBytes(of: (headerLength ?? UInt64(headerBytes.count)).littleEndian) { file.append(contentsOf: $0) }
    file.append(headerBytes)
    file.append(contentsOf: data)
    return file
}

func openError(_ contents: Data) throws -> SafeTensorsError? {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("broken.safetensors")
    try contents.write(to: url)
    do {
        _ = try SafeTensorsFile(path: url.path)
        return nil
    } catch let error as SafeTensorsError {
        // Every error names the file it is about.
        #expect(error.description.contains(url.path) || error.description.contains("broken.safetensors"))
        return error
    }
}

@Suite struct SafeTensorsReaderTests {
    @Test func roundTripsEveryStorageType() throws {
        let values: [Float] = [0, 1, -2.5, 3.140625, 65504, -0.0009765625]
        let tensor = Tensor(shape: [2, 3], values: values)
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.safetensors")
        try SafeTensorsWriter.write([
            .init(name: "f32", tensor: tensor, dtype: .float32),
            .init(name: "bf16", tensor: tensor, dtype: .bfloat16),
            .init(name: "f16", tensor: tensor, dtype: .float16),
            .init(name: "ids", integers: [1, -2, 1 << 40]),
            .init(name: "empty", dtype: .float32, shape: [0, 4], bytes: Data()),
        ], metadata: ["format": "pt"], to: url)
        let file = try SafeTensorsFile(path: url.path)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.tensorNames == ["bf16", "empty", "f16", "f32", "ids"])
        #expect(try file.floatTensor("f32").toArray() == values)
        #expect(try file.floatTensor("f16").toArray() == values)  // all exactly representable in fp16
        #expect(try file.floatTensor("bf16").toArray() == values.map { HalfPrecision.floatFromBFloat16(HalfPrecision.bfloat16FromFloat($0)) })
        #expect(try file.integers("ids") == [1, -2, 1 << 40])
        #expect(try file.floatTensor("empty").shape == [0, 4])
        #expect(try file.entry("f32").shape == [2, 3])
        #expect(throws: SafeTensorsError.tensorNotFound(file: url.path, tensor: "nope")) { try file.floatTensor("nope") }
        #expect(throws: SafeTensorsError.self) { try file.integers("f32") }
    }

    @Test func rejectsTruncatedFile() throws {
        let good = rawFile(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16))
        let error = try openError(good.prefix(good.count - 5))
        guard case let .offsetsOutOfRange(_, tensor, begin, end, dataLength, _) = error else {
            Issue.record("expected offsetsOutOfRange, got \(String(describing: error))"); return
        }
        #expect(tensor == "a" && begin == 0 && end == 16 && dataLength == 11)
    }

    @Test func rejectsFilesShorterThanTheLengthPrefix() throws {
        guard case .fileTooSmall(_, 0)? = try openError(Data()) else {
            Issue.record("expected fileTooSmall for an empty file"); return
        }
        guard case .fileTooSmall(_, 5)? = try openError(Data([1, 2, 3, 4, 5])) else {
            Issue.record("expected fileTooSmall"); return
        }
    }

    @Test func rejectsHeaderLengthPastTheEnd() throws {
        let error = try openError(rawFile(headerLength: 1000, header: "{}", data: []))
        guard case let .headerLengthOutOfRange(_, length, size)? = error else {
            Issue.record("expected headerLengthOutOfRange, got \(String(describing: error))"); return
        }
        #expect(length == 1000 && size == 10)
        // A length that would overflow when added to 8.
        guard case .headerLengthOutOfRange? = try openError(rawFile(headerLength: .max, header: "{}", data: [])) else {
            Issue.record("expected headerLengthOutOfRange for UInt64.max"); return
        }
    }

    @Test func rejectsOffsetsOutOfRange() throws {
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        let error = try openError(rawFile(header: header, data: Array(repeating: 0, count: 8)))
        guard case let .offsetsOutOfRange(_, tensor, begin, end, dataLength, dataStart)? = error else {
            Issue.record("expected offsetsOutOfRange, got \(String(describing: error))"); return
        }
        #expect(tensor == "w" && begin == 8 && end == 16 && dataLength == 8 && dataStart == 8 + header.utf8.count)
        #expect(error!.description.contains("'w'"))
        // Reversed offsets.
        guard case .offsetsOutOfRange? = try openError(rawFile(
            header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: Array(repeating: 0, count: 8))) else {
            Issue.record("expected offsetsOutOfRange for reversed offsets"); return
        }
    }

    @Test func rejectsSizeThatDoesNotMatchShapeTimesWidth() throws {
        let error = try openError(rawFile(
            header: #"{"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16)))
        #expect(error == .sizeMismatch(file: error?.file ?? "", tensor: "w", shape: [3, 2], dtype: "BF16", expectedBytes: 12, actualBytes: 16))
    }

    @Test func rejectsHeaderThatIsNotJSON() throws {
        guard case .headerNotJSON? = try openError(rawFile(header: "{not json", data: [])) else {
            Issue.record("expected headerNotJSON"); return
        }
        guard case .headerNotJSON? = try openError(rawFile(header: "[1, 2]", data: [])) else {
            Issue.record("expected headerNotJSON for an array"); return
        }
        guard case .headerNotJSON? = try openError(rawFile(header: String(repeating: "\u{0}", count: 8), data: [])) else {
            Issue.record("expected headerNotJSON for zero bytes"); return
        }
    }

    @Test func rejectsUnknownDType() throws {
        let error = try openError(rawFile(
            header: #"{"w":{"dtype":"F12","shape":[1],"data_offsets":[0,2]}}"#, data: [0, 0]))
        #expect(error == .unknownDType(file: error?.file ?? "", tensor: "w", dtype: "F12"))
    }

    @Test func rejectsMalformedEntriesAndOverlaps() throws {
        guard case let .invalidTensorEntry(_, tensor, _)? = try openError(rawFile(
            header: #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])) else {
            Issue.record("expected invalidTensorEntry for a fractional dimension"); return
        }
        #expect(tensor == "w")
        guard case .invalidTensorEntry? = try openError(rawFile(
            header: #"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])) else {
            Issue.record("expected invalidTensorEntry for a missing dtype"); return
        }
        guard case .invalidTensorEntry? = try openError(rawFile(
            header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])) else {
            Issue.record("expected invalidTensorEntry for a negative dimension"); return
        }
        let overlap = try openError(rawFile(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            data: Array(repeating: 0, count: 12)))
        #expect(overlap == .overlappingTensors(file: overlap?.file ?? "", first: "a", second: "b", byteOffset: 4))
    }

    /// As the reference's `Metadata::validate`: sorted by offsets, each tensor begins where the
    /// previous one ends (the first at 0).
    @Test func rejectsGapsBetweenTensors() throws {
        let gap = try openError(rawFile(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#,
            data: Array(repeating: 0, count: 16)))
        guard case let .gapBeforeTensor(_, previous, tensor, gapBegin, gapEnd, dataStart)? = gap else {
            Issue.record("expected gapBeforeTensor, got \(String(describing: gap))"); return
        }
        #expect(previous == "a" && tensor == "b" && gapBegin == 8 && gapEnd == 12)
        #expect(gap!.description.contains("'a' and 'b'") && gap!.description.contains("data bytes 8..<12"))
        #expect(gap!.description.contains("file bytes \(dataStart + 8)..<\(dataStart + 12)"))

        let leading = try openError(rawFile(
            header: #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8)))
        guard case .gapBeforeTensor(_, nil, "b", 0, 4, _)? = leading else {
            Issue.record("expected gapBeforeTensor before the first tensor, got \(String(describing: leading))"); return
        }
        #expect(leading!.description.contains("before the first tensor 'b'"))
    }

    /// The reference's "MetadataIncompleteBuffer": the last tensor must end the file.
    @Test func rejectsBytesAfterTheLastTensor() throws {
        let trailing = try openError(rawFile(
            header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: Array(repeating: 0, count: 7)))
        guard case .bytesAfterLastTensor(_, "a", 4, 7, _)? = trailing else {
            Issue.record("expected bytesAfterLastTensor, got \(String(describing: trailing))"); return
        }
        #expect(trailing!.description.contains("3 bytes after the tensors"))
        let noTensors = try openError(rawFile(header: "{}", data: [1, 2]))
        guard case .bytesAfterLastTensor(_, nil, 0, 2, _)? = noTensors else {
            Issue.record("expected bytesAfterLastTensor without tensors, got \(String(describing: noTensors))"); return
        }
    }

    /// Zero tensors and zero data bytes; header padding with spaces (as the reference writer
    /// pads); empty tensors placed at the offset where they stand.
    @Test func acceptsEmptyFilesPaddedHeadersAndEmptyTensors() throws {
        #expect(try openError(rawFile(header: "{}", data: [])) == nil)
        #expect(try openError(rawFile(header: "{}      ", data: [])) == nil)
        #expect(try openError(rawFile(
            header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#,
            data: Array(repeating: 0, count: 4))) == nil)
    }

    /// Our writer lays tensors back to back, so what it writes is valid under the strict rule.
    @Test func writerOutputIsContiguous() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("written.safetensors")
        try SafeTensorsWriter.write([
            .init(name: "b", tensor: Tensor(shape: [3]), dtype: .bfloat16),
            .init(name: "empty", dtype: .float32, shape: [0], bytes: Data()),
            .init(name: "a", integers: [1, 2]),
        ], metadata: ["format": "pt"], to: url)
        #expect(try SafeTensorsFile(path: url.path).tensorNames == ["a", "b", "empty"])
        try SafeTensorsWriter.write([], to: url)
        #expect(try SafeTensorsFile(path: url.path).tensorNames.isEmpty)
    }

    /// Every committed safetensors fixture passes the strict layout rule.
    @Test func everyFixtureLoads() throws {
        let files = FileManager.default.enumerator(at: Fixtures.directory, includingPropertiesForKeys: nil)!
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "safetensors" }
        #expect(files.count >= 20)
        for file in files {
            #expect(throws: Never.self, "\(file.path)") { _ = try SafeTensorsFile(path: file.path) }
        }
    }

    @Test func headerThatIsNotUTF8NamesTheByte() throws {
        var header = Data(#"{"w\#u{e9}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#.utf8)
        header[3] = 0xFF  // inside the key, after `{"w`
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(header)
        let error = try openError(file)
        #expect(error == .headerNotUTF8(file: error?.file ?? "", fileOffset: 8 + 3))
        #expect(error!.description.contains("not valid UTF-8 (first bad byte at file byte 11)"))
    }

    /// No JSON failure of the header shows a Swift type name or Foundation's error domain.
    @Test func headerJSONErrorsAreInWords() throws {
        let headers = [
            "{not json", "", "[1, 2]", #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#,
            #"{"w":{"dtype":"F32","shape":"x","data_offsets":[0,4]}}"#, #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x"#,
            #"{"w":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}"#, #"{"w":{"dtype":"F\q","shape":[1],"data_offsets":[0,4]}}"#,
            #"{"__metadata__":{"a":1}}"#, #"{"w":null}"#,
        ]
        for header in headers {
            let error = try openError(rawFile(header: header, data: [0, 0, 0, 0]))
            let text = error?.description ?? ""
            #expect(error != nil, "\(header)")
            for leak in ["Foundation", "JSONError", "NSCocoaErrorDomain", "Swift.", "Int>", "Array<", "Dictionary<", "SourceLocation"] {
                #expect(!text.contains(leak), "\(text)")
            }
        }
    }

    @Test func missingFileIsAnErrorNotACrash() {
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(path: "/nonexistent/model.safetensors") }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(path: "/tmp") }
    }
}

@Suite struct CheckpointTests {
    /// The sharded copy of tiny-llama holds the same tensors as the single file.
    @Test func shardedCheckpointMatchesSingleFile() throws {
        let single = try Checkpoint(directory: Fixtures.url("tiny-llama"))
        let sharded = try Checkpoint(directory: Fixtures.url("tiny-llama-sharded"))
        #expect(sharded.files.count > 1)
        #expect(single.tensorNames == sharded.tensorNames)
        for name in single.tensorNames {
            #expect(try single.floatTensor(name).toArray() == sharded.floatTensor(name).toArray(), "\(name)")
        }
    }

    @Test func indexNamingAMissingTensorIsAnError() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try SafeTensorsWriter.write([.init(name: "a", tensor: Tensor(shape: [1]))], to: directory.appendingPathComponent("part-1.safetensors"))
        let index = #"{"metadata": {}, "weight_map": {"a": "part-1.safetensors", "b": "part-1.safetensors"}}"#
        try Data(index.utf8).write(to: directory.appendingPathComponent("model.safetensors.index.json"))
        #expect(throws: SafeTensorsError.self) { try Checkpoint(directory: directory) }
        try Data("{\"weight_map\": 3}".utf8).write(to: directory.appendingPathComponent("model.safetensors.index.json"))
        #expect(throws: SafeTensorsError.self) { try Checkpoint(directory: directory) }
    }

    @Test func emptyDirectoryIsAnError() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: SafeTensorsError.noSafetensorsFiles(directory: directory.path)) { try Checkpoint(directory: directory) }
    }
}

extension SafeTensorsError {
    /// The file an error names, to build expected values.
    var file: String {
        switch self {
        case let .cannotOpen(file, _), let .fileTooSmall(file, _), let .headerLengthOutOfRange(file, _, _),
             let .headerNotUTF8(file, _), let .headerNotJSON(file, _), let .invalidTensorEntry(file, _, _), let .unknownDType(file, _, _),
             let .offsetsOutOfRange(file, _, _, _, _, _), let .sizeMismatch(file, _, _, _, _, _),
             let .overlappingTensors(file, _, _, _), let .gapBeforeTensor(file, _, _, _, _, _),
             let .bytesAfterLastTensor(file, _, _, _, _), let .tensorNotFound(file, _), let .unsupportedConversion(file, _, _, _),
             let .invalidShardIndex(file, _):
            return file
        case .duplicateTensor, .noSafetensorsFiles: return ""
        }
    }

}
