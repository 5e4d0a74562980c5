import CZlib
import Foundation

/// The bytes of a gzip file (every member, as `gzip -dc` concatenates them).
///
/// zlib through a system-library module rather than `gzip -dc` in a `Process`: Foundation on
/// Linux has no gzip API, but libpng already brings zlib in, so linking it costs nothing, while a
/// subprocess would need a `gzip` binary on the PATH and would turn a damaged file into an exit
/// status instead of zlib's own message.
func gunzip(_ compressed: Data, file: String) throws(TaskDataError) -> Data {
    if compressed.isEmpty { throw .notGzip(file: file, reason: "the file is empty") }
    var output = Data()
    var stream = z_stream()
    guard taskdata_inflate_init_gzip(&stream) == Z_OK else { throw .notGzip(file: file, reason: "zlib could not start inflating") }
    defer { inflateEnd(&stream) }
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    let failure: String? = compressed.withUnsafeBytes { (input: UnsafeRawBufferPointer) -> String? in
        stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress!)
        stream.avail_in = uInt(input.count)
        while true {
            let status: Int32 = chunk.withUnsafeMutableBufferPointer { buffer in
                stream.next_out = buffer.baseAddress
                stream.avail_out = uInt(buffer.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
            switch status {
            case Z_STREAM_END:
                // Another gzip member may follow (gzip files may be concatenated).
                if stream.avail_in == 0 { return nil }
                inflateReset(&stream)
            case Z_OK:
                continue
            case Z_BUF_ERROR where stream.avail_in == 0:
                return "the file ends before the compressed data does (truncated?)"
            default:
                return stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
            }
        }
    }
    if let failure { throw .notGzip(file: file, reason: failure) }
    return output
}
