import Foundation
import TensorCore

/// Locations of the committed fixtures (written by tools/reference) and comparison helpers.
public enum Fixtures {
    /// Tests/Fixtures in the source tree.
    public static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    public static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// The repository root (for tests that run the built binary).
    public static let repositoryRoot = directory.deletingLastPathComponent().deletingLastPathComponent()
}

/// Largest |a - b| over two equally sized buffers.
public func maxAbsoluteDifference(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var worst: Float = 0
    for i in 0..<count { worst = max(worst, abs(a[i] - b[i])) }
    return worst
}

public func maxAbsoluteDifference(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count, "comparing \(a.shape) with \(b.shape)")
    return maxAbsoluteDifference(a.pointer, b.pointer, count: a.count)
}

/// A fresh empty directory for one test, inside this process's folder under the temporary folder
/// (removed when the test process exits, so runs leave nothing behind).
public func makeTemporaryDirectory(_ label: String = "pdrop-test") throws -> URL {
    let url = testProcessFolder.appendingPathComponent("\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// This test process's folder of temporary directories; an exit handler removes it.
private let testProcessFolder: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pdrop-tests-\(getpid())-\(UUID().uuidString.prefix(8))")
    testProcessFolderPath = url.path
    atexit { if let path = testProcessFolderPath { try? FileManager.default.removeItem(atPath: path) } }
    return url
}()
nonisolated(unsafe) private var testProcessFolderPath: String?
