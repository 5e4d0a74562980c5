import ArgumentParser
import Foundation

@main
struct PDrop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pdrop",
        abstract: "Run LLaVA-family models with PyramidDrop visual token reduction.",
        subcommands: [GenerateCommand.self, LogitsCommand.self, FLOPsCommand.self, BenchCommand.self, TrainCommand.self, EvalCommand.self, DataCommand.self, InitCommand.self, ConvertCommand.self])
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
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
