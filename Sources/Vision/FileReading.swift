import Foundation

/// Why a file could not be read, in the operating system's words.
struct FileReadError: Error {
    let reason: String
}

/// The whole content of a regular file. Plain POSIX calls rather than `Data(contentsOf:)`, whose Linux
/// implementation reports failures vaguely and leaks a buffer on empty files; here the reason is strerror's.
func readWholeFile(atPath path: String) -> Result<[UInt8], FileReadError> {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return .failure(FileReadError(reason: String(cString: strerror(errno)))) }
    defer { close(descriptor) }

    var status = stat()
    guard fstat(descriptor, &status) == 0 else { return .failure(FileReadError(reason: String(cString: strerror(errno)))) }
    guard (status.st_mode & S_IFMT) == S_IFREG else { return .failure(FileReadError(reason: "not a regular file")) }

    let expectedSize = Int(status.st_size)
    var bytes = [UInt8](repeating: 0, count: expectedSize)  // (file size)
    var filled = 0
    while filled < expectedSize {
        let count = bytes.withUnsafeMutableBytes { buffer in
            read(descriptor, buffer.baseAddress.map { $0 + filled }, expectedSize - filled)
        }
        if count < 0 {
            if errno == EINTR { continue }
            return .failure(FileReadError(reason: String(cString: strerror(errno))))
        }
        if count == 0 { break }  // the file shrank while being read: keep what is there
        filled += count
    }
    return .success(filled == expectedSize ? bytes : Array(bytes.prefix(filled)))
}
