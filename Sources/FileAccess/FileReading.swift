import Foundation

/// Why a file could not be read, in the operating system's words.
public struct FileReadError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

/// The size of the regular file at `path` (symbolic links followed), or why it is not one. Called
/// before a file a user named is opened: `open` on a FIFO blocks until a writer appears, so it
/// is refused here from its `stat` alone, as are directories and devices.
public func regularFileSize(atPath path: String) -> Result<Int, FileReadError> {
    var status = stat()
    guard stat(path, &status) == 0 else { return .failure(FileReadError(reason: String(cString: strerror(errno)))) }
    let kind = status.st_mode & S_IFMT
    guard kind == S_IFREG else {
        let name = kind == S_IFDIR ? "a directory" : kind == S_IFIFO ? "a FIFO (named pipe)" : kind == S_IFSOCK ? "a socket" : "a device or other special file"
        return .failure(FileReadError(reason: "\(name), not a regular file"))
    }
    return .success(Int(status.st_size))
}

/// At most the first `count` bytes of a regular file (what a format check needs).
public func readFileStart(atPath path: String, count: Int) -> Result<[UInt8], FileReadError> {
    readRegularFile(atPath: path) { _ in count }
}

/// The whole content of a regular file. Plain POSIX calls rather than `Data(contentsOf:)`, whose Linux
/// implementation reports failures vaguely and leaks a buffer on empty files; here the reason is strerror's.
public func readWholeFile(atPath path: String) -> Result<[UInt8], FileReadError> {
    readRegularFile(atPath: path) { size in size }
}

/// Up to `length(file size)` bytes from the start of the regular file at `path`, refusing
/// anything else before opening it.
private func readRegularFile(atPath path: String, length: (Int) -> Int) -> Result<[UInt8], FileReadError> {
    if case .failure(let error) = regularFileSize(atPath: path) { return .failure(error) }
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard descriptor >= 0 else { return .failure(FileReadError(reason: String(cString: strerror(errno)))) }
    defer { close(descriptor) }

    var status = stat()
    guard fstat(descriptor, &status) == 0 else { return .failure(FileReadError(reason: String(cString: strerror(errno)))) }
    guard (status.st_mode & S_IFMT) == S_IFREG else { return .failure(FileReadError(reason: "not a regular file")) }

    let expectedSize = min(Int(status.st_size), length(Int(status.st_size)))
    var bytes = [UInt8](repeating: 0, count: expectedSize)  // (bytes to read)
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

/// The bytes of the regular file at `url` (see `readWholeFile`): what every reader of a file a
/// user names goes through, so a FIFO or a directory is refused before `open`.
public func readFileData(_ url: URL) throws(FileReadError) -> Data {
    switch readWholeFile(atPath: url.path) {
    case .success(let bytes): return Data(bytes)
    case .failure(let error): throw error
    }
}
