import Foundation
import Testing
@testable import Tokenizer

/// Bad files give a typed error naming the file and the offending key, never a crash.
@Suite struct LoadingErrorTests {
    /// A tiny valid BPE tokenizer.json that the cases below break one piece at a time.
    static func minimalTokenizer(
        normalizer: String = "null", preTokenizer: String = "null", decoder: String = "null",
        postProcessor: String = "null", model: String? = nil
    ) -> Data {
        let defaultModel = """
        {"type": "BPE", "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3}, "merges": ["a b"], "unk_token": "<unk>"}
        """
        return Data("""
        {"version": "1.0", "added_tokens": [], "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer),
         "post_processor": \(postProcessor), "decoder": \(decoder), "model": \(model ?? defaultModel)}
        """.utf8)
    }

    static func loadingError(_ data: Data) -> TokenizerError? {
        do {
            _ = try Tokenizer(data: data)
            return nil
        } catch let error as TokenizerError {
            return error
        } catch {
            return nil
        }
    }

    @Test func minimalTokenizerLoadsAndEncodes() throws {
        let tokenizer = try Tokenizer(data: Self.minimalTokenizer())
        #expect(try tokenizer.encode("abba") == [3, 2, 1])
        #expect(try tokenizer.encode("axb") == [1, 0, 2])
    }

    @Test func invalidJSONNamesFileLineAndColumn() {
        let error = Self.loadingError(Data("{\n  \"model\": [1, 2,\n}".utf8))
        guard case let .invalidJSON(file, line, column, _)? = error else {
            Issue.record("expected invalidJSON, got \(String(describing: error))")
            return
        }
        #expect(file == "tokenizer.json")
        #expect(line == 3)
        #expect(column == 1)
    }

    @Test(arguments: [
        "", "{", "[1, 2]x", "{\"a\": tru}", "{\"a\": \"\\ud800\"}", "{\"a\": 01}", "{\"a\": \"x\ny\"}", "\u{FEFF}{}",
    ])
    func malformedJSONIsRejected(_ text: String) {
        guard case .invalidJSON? = Self.loadingError(Data(text.utf8)) else {
            Issue.record("\(text.debugDescription) was not rejected as invalid JSON")
            return
        }
    }

    @Test func invalidUTF8IsRejected() {
        var bytes = Array("{\"model\": \"".utf8)
        bytes += [0xC3, 0x28]
        bytes += Array("\"}".utf8)
        guard case .invalidJSON? = Self.loadingError(Data(bytes)) else {
            Issue.record("invalid UTF-8 was accepted")
            return
        }
    }

    @Test func deepNestingIsRejectedWithoutOverflowingTheStack() {
        let text = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        guard case .invalidJSON? = Self.loadingError(Data(text.utf8)) else {
            Issue.record("deep nesting was not rejected")
            return
        }
    }

    @Test func missingModel() {
        #expect(Self.loadingError(Data("{\"normalizer\": null}".utf8)) == .missingKey(file: "tokenizer.json", path: "model"))
    }

    @Test func topLevelMustBeAnObject() {
        #expect(Self.loadingError(Data("[]".utf8))
                == .wrongType(file: "tokenizer.json", path: "(root)", expected: "an object", found: "an array"))
    }

    @Test func unknownNormalizerInsideASequenceNamesItsPath() {
        let normalizer = """
        {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "_"}, {"type": "X"}]}
        """
        #expect(Self.loadingError(Self.minimalTokenizer(normalizer: normalizer))
                == .unknownStageType(file: "tokenizer.json", path: "normalizer.normalizers[1]", type: "X"))
    }

    @Test func unknownStagesOfEveryKind() {
        #expect(Self.loadingError(Self.minimalTokenizer(preTokenizer: "{\"type\": \"BertPreTokenizer\"}"))
                == .unknownStageType(file: "tokenizer.json", path: "pre_tokenizer", type: "BertPreTokenizer"))
        #expect(Self.loadingError(Self.minimalTokenizer(decoder: "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"CTC\"}]}"))
                == .unknownStageType(file: "tokenizer.json", path: "decoder.decoders[0]", type: "CTC"))
        #expect(Self.loadingError(Self.minimalTokenizer(postProcessor: "{\"type\": \"BertProcessing\"}"))
                == .unknownStageType(file: "tokenizer.json", path: "post_processor", type: "BertProcessing"))
        #expect(Self.loadingError(Self.minimalTokenizer(model: "{\"type\": \"Unigram\", \"vocab\": []}"))
                == .unknownStageType(file: "tokenizer.json", path: "model", type: "Unigram"))
    }

    @Test func stageWithoutType() {
        #expect(Self.loadingError(Self.minimalTokenizer(normalizer: "{\"prepend\": \"_\"}"))
                == .missingKey(file: "tokenizer.json", path: "normalizer.type"))
    }

    @Test func wrongTypesNameTheKey() {
        #expect(Self.loadingError(Self.minimalTokenizer(model: "{\"type\": \"BPE\", \"vocab\": [], \"merges\": []}"))
                == .wrongType(file: "tokenizer.json", path: "model.vocab", expected: "an object", found: "an array"))
        #expect(Self.loadingError(Self.minimalTokenizer(model: "{\"type\": \"BPE\", \"vocab\": {\"a\": \"1\"}, \"merges\": []}"))
                == .wrongType(file: "tokenizer.json", path: "model.vocab.a", expected: "an integer", found: "a string"))
        #expect(Self.loadingError(Self.minimalTokenizer(
            preTokenizer: "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"always\", \"split\": \"yes\"}"))
                == .wrongType(file: "tokenizer.json", path: "pre_tokenizer.split", expected: "a boolean", found: "a string"))
    }

    @Test func badMergesNameTheirIndex() {
        let unknownToken = "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", \"a c\"]}"
        guard case let .invalidValue(_, path, _)? = Self.loadingError(Self.minimalTokenizer(model: unknownToken)) else {
            Issue.record("merge with a token outside the vocabulary was accepted")
            return
        }
        #expect(path == "model.merges[1]")
        let malformed = "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b c\"]}"
        guard case let .invalidValue(_, malformedPath, _)? = Self.loadingError(Self.minimalTokenizer(model: malformed)) else {
            Issue.record("three-part merge was accepted")
            return
        }
        #expect(malformedPath == "model.merges[0]")
        let pair = "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", 7]]}"
        guard case let .invalidValue(_, pairPath, _)? = Self.loadingError(Self.minimalTokenizer(model: pair)) else {
            Issue.record("merge pair with a number was accepted")
            return
        }
        #expect(pairPath == "model.merges[0]")
    }

    @Test func unknownTokenOutsideTheVocabulary() {
        let model = "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}"
        guard case let .invalidValue(_, path, _)? = Self.loadingError(Self.minimalTokenizer(model: model)) else {
            Issue.record("unk_token outside the vocabulary was accepted")
            return
        }
        #expect(path == "model.unk_token")
    }

    @Test func invalidRegexNamesThePattern() {
        let split = "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\", \"invert\": false}"
        guard case let .invalidValue(_, path, _)? = Self.loadingError(Self.minimalTokenizer(preTokenizer: split)) else {
            Issue.record("invalid regex was accepted")
            return
        }
        #expect(path == "pre_tokenizer.pattern.Regex")
    }

    @Test func badEnumValues() {
        let behaviour = "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}"
        guard case let .invalidValue(_, behaviourPath, _)? = Self.loadingError(Self.minimalTokenizer(preTokenizer: behaviour)) else {
            Issue.record("unknown split behavior was accepted")
            return
        }
        #expect(behaviourPath == "pre_tokenizer.behavior")
        let scheme = "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"sometimes\"}"
        guard case let .invalidValue(_, schemePath, _)? = Self.loadingError(Self.minimalTokenizer(preTokenizer: scheme)) else {
            Issue.record("unknown prepend_scheme was accepted")
            return
        }
        #expect(schemePath == "pre_tokenizer.prepend_scheme")
    }

    @Test func templateWithUndeclaredSpecialToken() {
        let template = "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}"
        guard case let .invalidValue(_, path, _)? = Self.loadingError(Self.minimalTokenizer(postProcessor: template)) else {
            Issue.record("template with an undeclared special token was accepted")
            return
        }
        #expect(path == "post_processor.single[0].SpecialToken")
    }

    @Test func fileErrorsNameTheFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizer-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }

        let missing = folder.appendingPathComponent("absent.json")
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: missing) }
        do {
            _ = try Tokenizer(tokenizerJSON: missing)
        } catch let TokenizerError.unreadableFile(file, _) {
            #expect(file.hasSuffix("absent.json"))
        }

        let bad = folder.appendingPathComponent("bad.json")
        try Data("{\"model\": {\"type\": \"WordPiece\"}}".utf8).write(to: bad)
        #expect(throws: TokenizerError.unknownStageType(file: "bad.json", path: "model", type: "WordPiece")) {
            try Tokenizer(tokenizerJSON: bad)
        }

        // A broken tokenizer_config.json beside a good file is reported under its own name.
        let good = folder.appendingPathComponent("tokenizer.json")
        try Self.minimalTokenizer().write(to: good)
        try Data("{\"bos_token\": ".utf8).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        guard case let .invalidJSON(file, _, _, _)? = Self.capture({ try Tokenizer(tokenizerJSON: good) }) else {
            Issue.record("broken tokenizer_config.json was accepted")
            return
        }
        #expect(file == "tokenizer_config.json")
    }

    static func capture(_ body: () throws -> Tokenizer) -> TokenizerError? {
        do {
            _ = try body()
            return nil
        } catch {
            return error as? TokenizerError
        }
    }

    @Test func errorDescriptionsAreReadable() {
        let error = TokenizerError.unknownStageType(file: "tokenizer.json", path: "normalizer.normalizers[1]", type: "X")
        #expect(error.description == "tokenizer.json: unknown stage type \"X\" at \"normalizer.normalizers[1]\"")
    }
}

/// Patterns and files that would hang the tokenizer end in an error instead.
@Suite struct TokenizerHangTests {
    /// `(a+)+$` backtracks exponentially on "aaa…ab": unbounded, 40 characters take hours.
    @Test func catastrophicBacktrackingSplitPatternFailsQuicklyNamingIt() throws {
        let tokenizer = try Tokenizer(data: LoadingErrorTests.minimalTokenizer(preTokenizer: """
            {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false}
            """))
        #expect(try tokenizer.encode("aab") == [1, 3])  // a linear case still matches
        let clock = ContinuousClock()
        let start = clock.now
        #expect {
            _ = try tokenizer.encode(String(repeating: "a", count: 40) + "b")
        } throws: { error in
            let text = "\(error)"
            return text.contains("tokenizer.json") && text.contains("(a+)+$") && text.contains("pre_tokenizer")
                && text.contains("backtracking")
        }
        let elapsed = clock.now - start
        print("catastrophic pattern refused after \(elapsed)")
        #expect(elapsed < .seconds(5))
    }

    /// `open` on a FIFO blocks until a writer appears; it is refused from its stat first.
    @Test func fifoAsTokenizerFileIsRefusedWithoutBlocking() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fifo-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let fifo = directory.appendingPathComponent("tokenizer.json")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        #expect {
            _ = try Tokenizer(tokenizerJSON: fifo)
        } throws: { error in
            guard case let .unreadableFile(file, reason)? = error as? TokenizerError else { return false }
            return file == fifo.path && reason.contains("not a regular file")
        }
    }
}
