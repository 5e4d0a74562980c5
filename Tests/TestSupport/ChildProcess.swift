import Foundation

/// A child process whose exit is awaited through `terminationHandler`, registered before it
/// starts. `Process.waitUntilExit()` spins a run loop on the calling thread and, with many
/// children started and killed from concurrent tests, can miss an exit and wait forever
/// (swift-corelibs-foundation on Linux; seen here as a suite hung with no child left).
public final class ChildProcess: @unchecked Sendable {
    public let process: Process
    private let exited = DispatchSemaphore(value: 0)

    /// Starts `process` (configured, not yet run).
    public init(starting process: Process) throws {
        self.process = process
        process.terminationHandler = { [exited] _ in exited.signal() }
        try process.run()
    }

    /// The executable with `arguments`, output discarded unless given.
    public convenience init(
        _ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
        standardOutput: Any? = FileHandle.nullDevice, standardError: Any? = FileHandle.nullDevice
    ) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = standardOutput
        process.standardError = standardError
        try self.init(starting: process)
    }

    public var identifier: Int32 { process.processIdentifier }

    /// Waits for the exit (any number of times) and returns the exit status, or 128 + the signal that ended it.
    @discardableResult public func waitForExit() -> Int32 {
        exited.wait()
        exited.signal()
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Whether it has exited, without waiting.
    public var hasExited: Bool {
        guard exited.wait(timeout: .now()) == .success else { return false }
        exited.signal()
        return true
    }
}
