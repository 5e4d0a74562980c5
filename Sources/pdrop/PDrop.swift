import ArgumentParser
import FileAccess
import Foundation
import TensorCore

@main
struct PDrop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pdrop",
        abstract: "Run LLaVA-family models with PyramidDrop visual token reduction.",
        subcommands: [GenerateCommand.self, ServeCommand.self, LogitsCommand.self, FLOPsCommand.self, BenchCommand.self, TrainCommand.self, EvalCommand.self, DataCommand.self, InitCommand.self, ConvertCommand.self, QuantizeCommand.self])

    /// ParsableCommand's main, plus a hint when the arguments failed to parse and an option is
    /// followed by a negative number: argument-parser reads "-2,4,6" as a flag, not as the value.
    static func main() {
        startAgainWithOpenBLASSettings()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            if let hint = negativeValueHint(arguments) {
                FileHandle.standardError.write(Data("\(fullMessage(for: error))\n\(hint)\n".utf8))
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
    }
}

/// OpenBLAS reads its environment once, when it is loaded (before `main`): when a setting of
/// `OpenBLASEnvironment` is missing (the idle threads' wait; the kernel family where it chose its
/// generic SSE3 kernels on a CPU with AVX2 or AVX-512, `BLASCoreType`), the process starts itself
/// again with them set, once (they are then set, so the new process goes on).
func startAgainWithOpenBLASSettings() {
    let settings = OpenBLASEnvironment.toRequest()
    if settings.isEmpty { return }
    for (name, value) in settings { setenv(name, value, 1) }
    // The executable's own path (not /proc/self/exe), so the process keeps its name for ps and pkill.
    guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return }
    let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
    execv(executable, arguments)
    // Only reached when exec failed: carry on with OpenBLAS's own settings.
    for name in settings.keys { unsetenv(name) }
}

/// "Hint: negative values need '=': --layers=-2,4,6" for the first option (`--name`, no `=`)
/// followed by an argument that starts with '-' and a digit; nil when there is none.
func negativeValueHint(_ arguments: [String]) -> String? {
    for (option, value) in zip(arguments, arguments.dropFirst())
    where option.hasPrefix("--") && !option.contains("=") && value.count > 1 && value.hasPrefix("-")
        && value.dropFirst().first.map({ $0.isNumber || $0 == "." }) == true
    {
        return "Hint: a value starting with '-' is read as an option; negative values need '=': \(option)=\(value)"
    }
    return nil
}

/// Prints an error's description to stderr and exits non-zero, instead of a stack trace.
func failing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(userMessage(for: error))\n".utf8))
        throw ExitCode.failure
    }
}

/// An error as the user reads it: the project's errors as they describe themselves, Foundation's
/// (a file that cannot be read or written, JSON that does not parse) in words after the file.
func userMessage(for error: Error) -> String {
    let nsError = error as NSError
    guard error is DecodingError || nsError.domain == NSCocoaErrorDomain || nsError.domain == NSPOSIXErrorDomain else {
        return "\(error)"
    }
    let detail = describeFoundationError(error)
    guard let path = nsError.userInfo[NSFilePathErrorKey] as? String else { return detail }
    return "\(path): \(detail)"
}
