import Foundation
import Testing
import TestSupport

/// `pdrop data` as a user runs it: the same seed writes the same files, another seed other ones,
/// and a missing MNIST file is a clear error.
@Suite struct DataCommandTests {
    func files(_ directory: URL) throws -> [String: Data] {
        let names = try FileManager.default.subpathsOfDirectory(atPath: directory.path).filter { !$0.hasSuffix("/") }.sorted()
        var contents: [String: Data] = [:]
        for name in names {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path, isDirectory: &isDirectory)
            if !isDirectory.boolValue { contents[name] = try Data(contentsOf: directory.appendingPathComponent(name)) }
        }
        return contents
    }

    @Test func scenesAreReproducibleFromTheirSeed() throws {
        let directory = try makeTemporaryDirectory("data-cli")
        defer { try? FileManager.default.removeItem(at: directory) }
        let runs = try ["a", "b", "c"].map { name -> [String: Data] in
            let output = directory.appendingPathComponent(name)
            let run = try runPDrop(["data", "scenes", "--count", "3", "--seed", name == "c" ? "8" : "7", "--output", output.path,
                                    "--questions-per-image", "4"])
            #expect(run.status == 0, "\(run.stderr)")
            return try files(output)
        }
        #expect(runs[0] == runs[1] && runs[0] != runs[2])
        #expect(runs[0].keys.contains("questions.jsonl") && runs[0].keys.contains("train.json") && runs[0].keys.contains("patches.jsonl"))
        #expect(runs[0].keys.filter { $0.hasSuffix(".png") }.count == 3)
        let questions = String(decoding: runs[0]["questions.jsonl"] ?? Data(), as: UTF8.self).split(separator: "\n")
        #expect(questions.count == 12)

        let missing = try runPDrop(["data", "digits", "--count", "1", "--seed", "1", "--output", directory.appendingPathComponent("d").path,
                                    "--mnist", "/nonexistent/mnist_5k.csv.gz"])
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent/mnist_5k.csv.gz"))
    }

    /// `--objects` (the curriculum's smaller scenes) and `pdrop init --vision-positions` refuse
    /// values they do not know, naming the option.
    @Test func objectCountsAndPositionTablesOutsideTheirRangeAreRefused() throws {
        let directory = try makeTemporaryDirectory("data-cli-objects")
        defer { try? FileManager.default.removeItem(at: directory) }
        for count in ["0", "7"] {
            let run = try runPDrop(["data", "scenes", "--count", "1", "--seed", "1", "--objects", count, "--output", directory.appendingPathComponent(count).path])
            #expect(run.status != 0 && run.stderr.contains("--objects must be between 1 and 6"), "\(run.stderr)")
        }
        let one = try runPDrop(["data", "scenes", "--count", "2", "--seed", "1", "--objects", "1", "--questions-per-image", "7",
                                "--output", directory.appendingPathComponent("one").path])
        #expect(one.status == 0, "\(one.stderr)")
        let initRun = try runPDrop(["init", "--config", "x.json", "--tokenizer", "t", "--output", directory.appendingPathComponent("m").path,
                                 "--vision-positions", "learned"])
        #expect(initRun.status != 0 && initRun.stderr.contains("--vision-positions must be normal or sincos"), "\(initRun.stderr)")
    }
}
