import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import Tokenizer
import Training

/// The tiny LLaVA's tokenizer and configuration, and the training fixtures of
/// tools/reference/make_training_fixtures.py.
private enum DataFixtures {
    static let model = Fixtures.url("tiny-llava")
    static let training = Fixtures.url("training")
    static let tokenizer = Result { try Tokenizer(tokenizerJSON: model.appendingPathComponent("tokenizer.json")) }
    static let configuration = Result { () throws -> LlavaConfiguration in
        guard case let .llava(configuration) = try ModelConfiguration.load(from: model.appendingPathComponent("config.json")) else {
            throw FixtureError.notLlava
        }
        return configuration
    }
    /// config.json's top-level pad_token_id (LlavaConfiguration does not read it).
    static let padTokenID = Result { () throws -> Int in
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("config.json")))
        guard let padTokenID = (object as? [String: Any])?["pad_token_id"] as? Int else { throw FixtureError.noPadTokenID }
        return padTokenID
    }

    enum FixtureError: Error { case notLlava, noPadTokenID }

    /// 576: (image_size / patch_size)² patches, the class token dropped ("default" strategy).
    static func tokensPerImage(_ configuration: LlavaConfiguration) -> Int {
        let side = configuration.visionConfig.imageSize / configuration.visionConfig.patchSize
        return side * side
    }

    static func load(
        _ dataFile: URL, images: URL?, policy: BadRecordPolicy = .skip, tokenizer: Tokenizer? = nil, contextLength: Int? = nil
    ) throws -> TrainingDataset {
        let configuration = try configuration.get()
        return try TrainingDataset.load(
            dataFile: dataFile, imagesDirectory: images, tokenizer: tokenizer ?? self.tokenizer.get(),
            imageTokenID: configuration.imageTokenIndex, tokensPerImage: tokensPerImage(configuration),
            contextLength: contextLength ?? configuration.textConfig.maxPositionEmbeddings, badRecords: policy)
    }
}

private func writeJSON(_ object: Any, to url: URL) throws {
    try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .fragmentsAllowed]).write(to: url)
}

private let question: [String: Any] = ["from": "human", "value": "<image>\nWhat animal is in the picture?"]
private let answer: [String: Any] = ["from": "gpt", "value": "A tabby cat looking at the camera."]

/// nil when the arrays are equal, otherwise where they first differ (the arrays are long).
private func firstDifference(_ ours: [Int], _ reference: [Int]) -> String? {
    if let index = (0..<min(ours.count, reference.count)).first(where: { ours[$0] != reference[$0] }) {
        return "index \(index): ours \(ours[index]), reference \(reference[index])"
    }
    return ours.count == reference.count ? nil : "length: ours \(ours.count), reference \(reference.count)"
}

/// Synthetic samples of lengths `lengths`, ids `100 + row`, the second half learned.
private func syntheticSamples(_ lengths: [Int]) -> [TrainingSample] {
    lengths.enumerated().map { row, length in
        let ids = (0..<length).map { 100 + row * 10 + $0 }
        let labels = ids.enumerated().map { $0.offset >= length / 2 ? $0.element : ignoreLabel }
        return TrainingSample(id: "s\(row)", inputIds: ids, labels: labels, imageFile: nil, imageBlock: nil)
    }
}

@Suite struct ConversationData {
    // MARK: - Against the PyTorch reference

    @Test func inputIdsAndLabelsOfTheFourRecordsEqualThePyTorchReference() throws {
        let reference = try SafeTensorsFile(path: DataFixtures.training.appendingPathComponent("reference-train.safetensors").path)
        let dataset = try DataFixtures.load(
            DataFixtures.training.appendingPathComponent("data.json"), images: DataFixtures.training.appendingPathComponent("images"),
            policy: .refuse)
        #expect(dataset.recordCount == 4 && dataset.badRecords.isEmpty)
        try #require(dataset.samples.count == 4)

        let recordsJSON = try #require(reference.metadata["records"])
        let records = try #require(try JSONSerialization.jsonObject(with: Data(recordsJSON.utf8)) as? [[String: Any]])
        try #require(records.count == 4)
        for (r, sample) in dataset.samples.enumerated() {
            let referenceIds = try reference.integers("data.\(r).input_ids")
            let referenceLabels = try reference.integers("data.\(r).labels")
            #expect(firstDifference(sample.inputIds, referenceIds) == nil, "record \(r): input_ids")
            #expect(firstDifference(sample.labels, referenceLabels) == nil, "record \(r): labels")
            let meta = records[r]
            #expect(sample.id == meta["id"] as? String)
            #expect(sample.queryRows == meta["query_rows"] as? [Int])
            #expect(sample.imageFile?.lastPathComponent == meta["image"] as? String)
            let block = meta["image_block"] as? [Int]
            #expect(sample.imageBlock.map { [$0.lowerBound, $0.upperBound] } == block)
            print("record \(r) id \(sample.id): \(sample.length) tokens (reference \(referenceIds.count)), "
                  + "\(sample.labels.filter { $0 != ignoreLabel }.count) learned, query rows \(sample.queryRows), image block \(String(describing: sample.imageBlock))")
        }
        // Record 1 has a numeric id (2) and two answers; record 2 is text-only.
        #expect(dataset.samples[1].id == "2" && dataset.samples[1].queryRows.count == 2)
        #expect(dataset.samples[2].imageBlock == nil && dataset.samples[2].imageFile == nil)
    }

    // MARK: - Bad records

    @Test func everyKindOfBadRecordIsReportedWithItsIndexAndIdAndSkipped() throws {
        let directory = try makeTemporaryDirectory("conversation-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: Fixtures.url("images/chelsea.jpg"), to: directory.appendingPathComponent("chelsea.jpg"))
        try Data([0xFF, 0xD8, 0xFF, 0xE0] + Array(" not a jpeg".utf8)).write(to: directory.appendingPathComponent("broken.jpg"))
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("folder.jpg"), withIntermediateDirectories: false)

        let good: [String: Any] = ["id": "good", "image": "chelsea.jpg", "conversations": [question, answer]]
        func with(_ id: Any, _ changes: [String: Any]) -> [String: Any] {
            var record = good
            record["id"] = id
            for (key, value) in changes { record[key] = value }
            return record
        }
        let hi: [String: Any] = ["from": "human", "value": "Hi"]
        let cases: [(record: Any, id: String, reason: BadRecordReason?)] = [
            ("x", "?", .notAnObject(found: "a string")),
            (["id": "no-conversations", "image": "chelsea.jpg"], "no-conversations", .missingConversations),
            (with("not-array", ["conversations": "Hi"]), "not-array", .conversationsNotAnArray(found: "a string")),
            (with("empty", ["conversations": [Any]()]), "empty", .emptyConversations),
            (with("turn-not-object", ["conversations": [question, "Hi"]]), "turn-not-object", .turnNotAnObject(turn: 1, found: "a string")),
            (["id": 11, "conversations": [["from": "system", "value": "x"], answer]], "11", .unknownRole(turn: 0, found: "\"system\"")),
            (["id": "no-from", "conversations": [["value": "x"], answer]], "no-from", .unknownRole(turn: 0, found: "absent")),
            (["id": "value-number", "conversations": [["from": "human", "value": 3], answer]], "value-number",
             .valueNotAString(turn: 0, found: "a number")),
            (["id": "starts-with-gpt", "conversations": [answer, hi]], "starts-with-gpt", .rolesOutOfOrder(turn: 0, found: "gpt", expected: "human")),
            (["id": "two-humans", "conversations": [hi, hi, answer]], "two-humans", .rolesOutOfOrder(turn: 1, found: "human", expected: "gpt")),
            (["id": "no-gpt", "conversations": [hi]], "no-gpt", .noAnswer),
            (with("image-number", ["image": 5]), "image-number", .imageNotAFileName(found: "a number")),
            (with("image-empty", ["image": ""]), "image-empty", .imageNotAFileName(found: "an empty string")),
            (with("missing-image", ["image": "nothere.jpg"]), "missing-image",
             .missingImageFile(path: directory.appendingPathComponent("nothere.jpg").path)),
            (with("image-folder", ["image": "folder.jpg"]), "image-folder",
             .missingImageFile(path: directory.appendingPathComponent("folder.jpg").path)),
            (with("broken-image", ["image": "broken.jpg"]), "broken-image", nil),  // .undecodableImage, checked below
            (with("two-placeholders", ["conversations": [["from": "human", "value": "<image>\n<image>\nHi"], answer]]), "two-placeholders",
             .imagePlaceholderCount(count: 2, hasImage: true)),
            (with("no-placeholder", ["conversations": [hi, answer]]), "no-placeholder", .imagePlaceholderCount(count: 0, hasImage: true)),
            (["id": 7, "conversations": [question, answer]], "7", .imagePlaceholderCount(count: 1, hasImage: false)),
            (with("placeholder-in-answer", ["conversations": [hi, ["from": "gpt", "value": "<image>"]]]), "placeholder-in-answer",
             .imagePlaceholderInAnswer(turn: 1)),
            (["id": 2.5, "conversations": [["from": "human", "value": String(repeating: "word ", count: 5000)], answer]], "2.5", nil),  // too long
        ]
        let textOnly: [String: Any] = ["id": "text", "conversations": [["from": "human", "value": "What is the capital of France?"],
                                                                        ["from": "gpt", "value": "Paris."]]]
        let records: [Any] = [good] + cases.map(\.record) + [textOnly]
        let dataFile = directory.appendingPathComponent("data.json")
        try writeJSON(records, to: dataFile)

        let dataset = try DataFixtures.load(dataFile, images: directory)
        #expect(dataset.recordCount == cases.count + 2)
        #expect(dataset.samples.map(\.id) == ["good", "text"])
        try #require(dataset.badRecords.count == cases.count)
        for (offset, (bad, expected)) in zip(dataset.badRecords, cases).enumerated() {
            #expect(bad.index == offset + 1)
            #expect(bad.id == expected.id)
            if let reason = expected.reason {
                #expect(bad.reason == reason, "record \(bad.index)")
            }
            #expect("\(bad)".hasPrefix("record \(offset + 1) (id \(expected.id)): "))
        }
        let broken = dataset.badRecords[15]
        guard case let .undecodableImage(error) = broken.reason else { Issue.record("broken.jpg: \(broken)"); return }
        #expect(error.file == directory.appendingPathComponent("broken.jpg").path)
        let tooLong = dataset.badRecords[20]
        guard case let .longerThanContext(tokens, context) = tooLong.reason else { Issue.record("too long: \(tooLong)"); return }
        #expect(tokens > 5000 && context == 4096)
    }

    @Test func refuseThrowsListingAllBadRecords() throws {
        let directory = try makeTemporaryDirectory("conversation-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        let text: [String: Any] = ["id": "ok", "conversations": [["from": "human", "value": "Hi"], answer]]
        let dataFile = directory.appendingPathComponent("data.json")
        try writeJSON([text, ["id": "a", "conversations": [Any]()], 42, text], to: dataFile)

        #expect(try DataFixtures.load(dataFile, images: nil, policy: .skip).samples.count == 2)
        do {
            _ = try DataFixtures.load(dataFile, images: nil, policy: .refuse)
            Issue.record("refuse accepted a file with bad records")
        } catch let error as ConversationDataError {
            guard case let .badRecords(file, records, recordCount) = error else { Issue.record("\(error)"); return }
            #expect(file == dataFile.path && recordCount == 4)
            #expect(records == [BadRecord(index: 1, id: "a", reason: .emptyConversations),
                                BadRecord(index: 2, id: "?", reason: .notAnObject(found: "a number"))])
            let message = "\(error)"
            #expect(message.contains("2 of 4 records") && message.contains("record 1 (id a)") && message.contains("record 2 (id ?)"))
        }
    }

    @Test func aFileThatIsNotAJSONArrayIsAnErrorNamingTheFile() throws {
        let directory = try makeTemporaryDirectory("conversation-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        let notJSON = directory.appendingPathComponent("data.txt")
        try Data("id,image\n1,a.jpg\n".utf8).write(to: notJSON)
        do {
            _ = try DataFixtures.load(notJSON, images: nil)
            Issue.record("a CSV file was accepted")
        } catch let error as ConversationDataError {
            guard case let .notJSON(file, _) = error else { Issue.record("\(error)"); return }
            #expect(file == notJSON.path && "\(error)".hasPrefix(notJSON.path))
        }

        let object = directory.appendingPathComponent("object.json")
        try writeJSON(["id": "a"], to: object)
        #expect(throws: ConversationDataError.notAnArray(file: object.path, found: "an object")) {
            try DataFixtures.load(object, images: nil)
        }
        let missing = directory.appendingPathComponent("missing.json")
        do {
            _ = try DataFixtures.load(missing, images: nil)
            Issue.record("a missing file was accepted")
        } catch let error as ConversationDataError {
            guard case let .unreadableFile(file, _) = error else { Issue.record("\(error)"); return }
            #expect(file == missing.path)
        }
    }

    @Test func aDirectoryOrAnUnreadableFileAsDataIsAnErrorInWords() throws {
        let directory = try makeTemporaryDirectory("conversation-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        for (dataFile, reason) in [(directory, "a directory, not a regular file"), (directory.appendingPathComponent("missing.json"), "No such file or directory")] {
            #expect(throws: ConversationDataError.unreadableFile(file: dataFile.path, reason: reason)) {
                try DataFixtures.load(dataFile, images: nil)
            }
        }
        let badUTF8 = directory.appendingPathComponent("latin1.json")
        try Data([0x5B, 0x22, 0xE9, 0x22, 0x5D]).write(to: badUTF8)  // ["é"] in Latin-1
        do {
            _ = try DataFixtures.load(badUTF8, images: nil)
            Issue.record("a Latin-1 file was accepted")
        } catch {
            #expect(!"\(error)".contains("Domain") && !"\(error)".contains("Foundation"), "\(error)")
        }
    }

    /// A record's image must stay inside the images directory: `..`, absolute paths and symbolic
    /// links pointing out are refused without opening the file (whose bytes never reach a message).
    @Test func imagePathsThatLeaveTheImagesDirectoryAreRefused() throws {
        let directory = try makeTemporaryDirectory("conversation-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        let images = directory.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Fixtures.url("images/chelsea.jpg"), to: images.appendingPathComponent("chelsea.jpg"))
        let secret = directory.appendingPathComponent("secret.txt")
        try Data("root:x:0:0:secret".utf8).write(to: secret)
        try FileManager.default.createSymbolicLink(at: images.appendingPathComponent("link.jpg"), withDestinationURL: secret)
        try FileManager.default.createSymbolicLink(at: images.appendingPathComponent("inside.jpg"), withDestinationURL: images.appendingPathComponent("chelsea.jpg"))

        let escaping = ["../secret.txt", "../../../../../../etc/passwd", secret.path, "link.jpg", "../missing.jpg", "./../images/../secret.txt"]
        let allowed = ["chelsea.jpg", "inside.jpg", images.appendingPathComponent("chelsea.jpg").path, "./chelsea.jpg"]
        let records: [Any] = (escaping + allowed).enumerated().map { index, image in
            ["id": "r\(index)", "image": image, "conversations": [question, answer]] as [String: Any]
        }
        let dataFile = directory.appendingPathComponent("data.json")
        try writeJSON(records, to: dataFile)

        let dataset = try DataFixtures.load(dataFile, images: images)
        #expect(dataset.samples.map(\.id) == (escaping.count..<(escaping.count + allowed.count)).map { "r\($0)" })
        #expect(dataset.badRecords.map(\.reason) == escaping.map { .imageOutsideImagesDirectory(image: $0, imagesDirectory: images.path) })

        do {
            _ = try DataFixtures.load(dataFile, images: images, policy: .refuse)
            Issue.record("escaping image paths were accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("record 0 (id r0): image \"../secret.txt\" lies outside the images directory \(images.path)"), "\(text)")
            #expect(!text.contains("root:x") && !text.contains("72 6f"), "\(text)")
        }
    }

    @Test func aPrefixThatTokenizesDifferentlyIsATokenizationMismatch() throws {
        // The tiny tokenizer with a top-priority merge ":" + "▁": in the whole text the ":" of
        // "ASSISTANT:" merges with the answer's leading space, so the prefix ending at ":" is not
        // a prefix of the ids (the case LLaVA warns about and masks).
        var json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: DataFixtures.model.appendingPathComponent("tokenizer.json"))) as? [String: Any])
        var model = try #require(json["model"] as? [String: Any])
        var vocabulary = try #require(model["vocab"] as? [String: Int])
        vocabulary[":▁"] = 32002
        model["vocab"] = vocabulary
        model["merges"] = [": ▁"] + (try #require(model["merges"] as? [String]))
        json["model"] = model
        let tokenizer = try Tokenizer(data: try JSONSerialization.data(withJSONObject: json))
        #expect(try tokenizer.encode("ASSISTANT: Hi").contains(32002))

        let directory = try makeTemporaryDirectory("conversation-data")
        defer { try? FileManager.default.removeItem(at: directory) }
        let dataFile = directory.appendingPathComponent("data.json")
        try writeJSON([["id": "m", "conversations": [["from": "human", "value": "Hi"], answer]]], to: dataFile)
        let dataset = try DataFixtures.load(dataFile, images: nil, tokenizer: tokenizer)
        #expect(dataset.samples.isEmpty)
        #expect(dataset.badRecords == [BadRecord(index: 0, id: "m", reason: .tokenizationMismatch(answer: 0, prefixEndsAfter: "\"ASSISTANT:\""))])
    }

    // MARK: - Template and labels

    @Test func multiTurnLabelsCoverEachAnswerAndItsEndWithOneQueryRowPerAnswer() throws {
        let tokenizer = try DataFixtures.tokenizer.get()
        let answers = ["The capital of France is Paris.", "About two million people.", "Yes."]
        let turns = answers.enumerated().flatMap { index, text in
            [ConversationTurn(role: .human, value: "Question \(index + 1)?"), ConversationTurn(role: .gpt, value: text)]
        }
        let rendered = ConversationTemplate.vicunaV1.render(turns)
        #expect(rendered.text == ConversationTemplate.vicunaV1.systemPrompt! + " USER: Question 1? ASSISTANT: The capital of France is Paris.</s>"
                + "USER: Question 2? ASSISTANT: About two million people.</s>USER: Question 3? ASSISTANT: Yes.</s>")
        #expect(rendered.answerPrefixes.count == 3 && rendered.answerPrefixes.allSatisfy { rendered.text.hasPrefix($0.end) })

        let record = ConversationRecord(id: "multi", image: nil, turns: turns)
        let sample = try TrainingSample.make(
            record: record, imagesDirectory: nil, tokenizer: tokenizer, imageTokenID: 32000, tokensPerImage: 576, contextLength: 4096)
        #expect(try sample.inputIds.first == tokenizer.bosTokenID && sample.inputIds == tokenizer.encode(rendered.text))
        let queryRows = sample.queryRows
        #expect(queryRows.count == 3)
        let colon = try #require(tokenizer.tokenID(":"))
        #expect(queryRows.allSatisfy { sample.inputIds[$0] == colon })
        // Each learned span: from the answer's leading space through its </s>.
        var spans: [Range<Int>] = []
        for start in queryRows.map({ $0 + 1 }) {
            var end = start
            while end < sample.length && sample.labels[end] != ignoreLabel { end += 1 }
            spans.append(start..<end)
        }
        for (span, text) in zip(spans, answers) {
            #expect(Array(sample.labels[span]) == Array(sample.inputIds[span]))
            #expect(tokenizer.decode(Array(sample.inputIds[span])) == text + "</s>")
            #expect(sample.inputIds[span.upperBound - 1] == tokenizer.eosTokenID)
        }
        #expect(sample.labels.filter { $0 != ignoreLabel }.count == spans.reduce(0) { $0 + $1.count })
        #expect(sample.imageBlock == nil && sample.imageFile == nil)
    }

    @Test func theImageTokenBecomesABlockOfIgnoredImageTokens() throws {
        let tokenizer = try DataFixtures.tokenizer.get()
        let image = Fixtures.url("images/chelsea.jpg")
        let record = ConversationRecord(
            id: "cat", image: image.lastPathComponent,
            turns: [ConversationTurn(role: .human, value: "<image>\nWhat is it?"), ConversationTurn(role: .gpt, value: "A cat.")])
        let sample = try TrainingSample.make(
            record: record, imagesDirectory: image.deletingLastPathComponent(), tokenizer: tokenizer, imageTokenID: 32000,
            tokensPerImage: 576, contextLength: 4096)
        let unexpanded = try tokenizer.encode(ConversationTemplate.vicunaV1.render(record.turns).text)
        let position = try #require(unexpanded.firstIndex(of: 32000))
        #expect(sample.length == unexpanded.count + 575)
        #expect(sample.imageBlock == position..<(position + 576))
        let block = try #require(sample.imageBlock)
        #expect(sample.inputIds[block].allSatisfy { $0 == 32000 } && sample.labels[block].allSatisfy { $0 == ignoreLabel })
        #expect(sample.inputIds.filter { $0 == 32000 }.count == 576)
        #expect(Array(sample.inputIds[..<position]) == Array(unexpanded[..<position]))
        #expect(Array(sample.inputIds[block.upperBound...]) == Array(unexpanded[(position + 1)...]))
        #expect(sample.imageFile == image)
    }

    // MARK: - Stream and batches

    @Test func theStreamWrapsIntoTheNextEpochAndResumesExactly() throws {
        let samples = syntheticSamples([2, 3, 4, 5, 6])
        var stream = try SampleStream(samples: samples)
        #expect(stream.next(2).map(\.id) == ["s0", "s1"])
        #expect(stream.next(2).map(\.id) == ["s2", "s3"])
        #expect(stream.position == SampleStreamPosition(epoch: 0, index: 4))
        #expect(stream.next(2).map(\.id) == ["s4", "s0"])
        #expect(stream.position == SampleStreamPosition(epoch: 1, index: 1))
        let saved = stream.position
        let continued = (0..<4).map { _ in stream.next(2).map(\.id) }
        #expect(continued == [["s1", "s2"], ["s3", "s4"], ["s0", "s1"], ["s2", "s3"]])
        #expect(stream.position == SampleStreamPosition(epoch: 2, index: 4))

        var resumed = try SampleStream(samples: samples, position: saved)
        #expect((0..<4).map { _ in resumed.next(2).map(\.id) } == continued)
        // A batch larger than an epoch takes the samples again.
        var large = try SampleStream(samples: samples)
        #expect(large.next(7).map(\.id) == ["s0", "s1", "s2", "s3", "s4", "s0", "s1"])

        #expect(throws: SampleStreamError.positionOutOfRange(SampleStreamPosition(epoch: 0, index: 5), samplesPerEpoch: 5)) {
            try stream.seek(to: SampleStreamPosition(epoch: 0, index: 5))
        }
        #expect(throws: SampleStreamError.positionOutOfRange(SampleStreamPosition(epoch: -1, index: 0), samplesPerEpoch: 5)) {
            try stream.seek(to: SampleStreamPosition(epoch: -1, index: 0))
        }
        #expect(throws: SampleStreamError.noSamples) { try SampleStream(samples: []) }
    }

    @Test func shuffledEpochsArePermutationsFixedBySeedAndEpoch() throws {
        // SplitMix64's published first outputs for seed 0, so the order can be reproduced elsewhere.
        var generator = SplitMix64(seed: 0)
        #expect([generator.next(), generator.next(), generator.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])

        let samples = syntheticSamples(Array(repeating: 3, count: 10))
        let orders = (0..<3).map { SampleStream.order(epoch: $0, sampleCount: 10, shuffleSeed: 1234) }
        for order in orders { #expect(order.sorted() == Array(0..<10)) }
        #expect(orders[0] != orders[1] && orders[1] != orders[2] && orders[0] != Array(0..<10))
        #expect(SampleStream.order(epoch: 1, sampleCount: 10, shuffleSeed: 1234) == orders[1])
        #expect(SampleStream.order(epoch: 0, sampleCount: 10, shuffleSeed: 99) != orders[0])
        #expect(SampleStream.order(epoch: 4, sampleCount: 10, shuffleSeed: nil) == Array(0..<10))

        var stream = try SampleStream(samples: samples, shuffleSeed: 1234)
        let taken = (0..<4).map { _ in stream.next(4).map(\.id) }.flatMap { $0 }
        #expect(taken == (orders[0] + orders[1]).prefix(16).map { "s\($0)" })
        #expect(stream.position == SampleStreamPosition(epoch: 1, index: 6))
        var resumed = try SampleStream(samples: samples, shuffleSeed: 1234, position: stream.position)
        let next = stream.next(7).map(\.id)
        #expect(next == (orders[1].suffix(4) + orders[2].prefix(3)).map { "s\($0)" })
        #expect(resumed.next(7).map(\.id) == next)
        #expect(resumed.position == SampleStreamPosition(epoch: 2, index: 3) && stream.position == resumed.position)
    }
}
