import Foundation
import FuzzHarness

// Built for fuzzing (`make fuzz`: -sanitize=fuzzer,address -DFUZZING -parse-as-library), libFuzzer
// provides `main` and calls the entry point below with the target named by PDROP_FUZZ_TARGET.
// Built normally, `PDropFuzz.main` replays files through the same functions:
//   pdrop-fuzz <target> <file or directory>...

#if FUZZING
private let fuzzTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["PDROP_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
        FileHandle.standardError.write(Data("pdrop-fuzz: set PDROP_FUZZ_TARGET to one of \(names)\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = start.map { Data(bytes: $0, count: count) } ?? Data()
    FuzzHarness.run(fuzzTarget, data)
    return 0
}

/// libFuzzer's driver (`int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*)(const uint8_t *, size_t))`).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// SwiftPM links an executable with `main` defined as `pdrop_fuzz_main` (its renamed entry point),
/// so libFuzzer's own `main` is not used: this entry point runs libFuzzer's driver instead.
@_cdecl("pdrop_fuzz_main")
public func pdropFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc, argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzTestOneInput)
}
#else
/// The replay tool of a normal build: `pdrop-fuzz <target> <file or directory>...`
/// (PDROP_FUZZ_VERBOSE=1 prints each input's outcome).
@main
enum PDropFuzz {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
        guard let first = arguments.first, let target = FuzzTarget(rawValue: first), arguments.count > 1 else {
            FileHandle.standardError.write(Data("usage: pdrop-fuzz <\(names)> <file or directory>...\n".utf8))
            exit(2)
        }
        var replayed = 0, accepted = 0
        let verbose = ProcessInfo.processInfo.environment["PDROP_FUZZ_VERBOSE"] != nil
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("pdrop-fuzz: no such file \(path)\n".utf8))
                exit(1)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                let error = FuzzHarness.run(target, data)
                if verbose { print("\(file): \(error.map { "refused: \($0)".prefix(200) } ?? "accepted")") }
                replayed += 1
                if error == nil { accepted += 1 }
            }
        }
        print("pdrop-fuzz \(target.rawValue): \(replayed) inputs replayed (\(accepted) accepted, the others refused with an error), no crash")
    }
}
#endif
