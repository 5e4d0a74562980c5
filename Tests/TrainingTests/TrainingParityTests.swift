import Engine
import Foundation
import Models
import SafeTensors
import TensorCore
import Testing
import TestSupport
import TokenReduction
import Training

/// One training step and ten AdamW steps of tiny-llava on the conversation fixture, against
/// what PyTorch + transformers compute (tools/reference/make_training_fixtures.py): loss, every
/// parameter's gradient, with and without PyramidDrop.
@Suite(.serialized) struct TrainingParityTests {
    /// LLaVA-1.5 (tiny-llava) and LLaVA-NeXT (tiny-llava-next: anyres tiles, image_newline) on the same data.
    static let models = ["tiny-llava", "tiny-llava-next"]
    static let cases = models.flatMap { model in ["none", "pdrop"].map { (model: model, method: $0) } }

    static func reference(_ model: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Fixtures.url(model == "tiny-llava" ? "training/reference-train.safetensors" : "training/reference-train-next.safetensors").path)
    }

    /// A fresh fp32 pipeline (training mutates its tensors) and the fixture's samples.
    static func load(_ model: String = "tiny-llava") throws -> (pipeline: InferenceSession, samples: [TrainingSample]) {
        let pipeline = try InferenceSession(directory: Fixtures.url(model), copiesToFloat32: true)
        let dataset = try TrainingDataset.load(
            dataFile: Fixtures.url("training/data.json"), imagesDirectory: Fixtures.url("training/images"),
            tokenizer: pipeline.tokenizer!, imageTokenID: pipeline.llava.configuration.imageTokenIndex,
            tokensPerImage: pipeline.llava.tokensPerTile,
            contextLength: pipeline.languageModel.configuration.maxPositionEmbeddings, badRecords: .refuse,
            imageTokenCount: pipeline.imageTokenCount)
        return (pipeline, dataset.samples)
    }

    static func reducer(_ method: String, layers: Int) throws -> VisualTokenReducer {
        if method == "none" { return NoReduction() }
        return PyramidDropReducer(schedule: try PyramidDropSchedule(layers: [2, 4, 6], ratios: [0.5, 0.25, 0.125], layerCount: layers))
    }

    /// max |ours − reference| / max |reference| over the tensor.
    static func relativeDifference(_ ours: UnsafePointer<Float>, _ reference: Tensor) -> Double {
        var worst: Float = 0, scale: Float = 0
        for i in 0..<reference.count {
            worst = max(worst, abs(ours[i] - reference[i]))
            scale = max(scale, abs(reference[i]))
        }
        return Double(worst) / Double(max(scale, 1e-30))
    }

    @Test(arguments: cases)
    func oneStepLossAndEveryGradient(model: String, method: String) throws {
        let reference = try Self.reference(model)
        let (pipeline, samples) = try Self.load(model)
        for record in 0..<samples.count {
            #expect(samples[record].inputIds == (try reference.integers("data.\(record).input_ids")), "\(model) record \(record): ids")
            #expect(samples[record].labels == (try reference.integers("data.\(record).labels")), "\(model) record \(record): labels")
        }
        let trainer = try Trainer(
            pipeline: pipeline, samples: samples, trainable: .all,
            reducer: try Self.reducer(method, layers: pipeline.languageModel.layers.count),
            optimizer: OptimizerSettings(), batchSize: 3)
        let (loss, outcomes) = try trainer.lossAndGradients(Array(samples[0..<3]))
        let expectedLoss = Double(try reference.floatTensor("step.\(method).loss")[0])
        #expect(abs(loss - expectedLoss) < 1e-5, "loss \(loss) vs \(expectedLoss)")

        let prefix = "step.\(method).grad."
        let embeddingName = "language_model.model.embed_tokens.weight"
        var compared = 0, worst = (name: "", difference: 0.0)
        for (name, gradient) in trainer.model.gradients {
            let referenceName = prefix + name
            guard reference.entries[referenceName] != nil else {
                // The reference has no gradient for it (vision layers past the feature layer): ours must be zero.
                #expect(gradient.toArray().allSatisfy { $0 == 0 }, "\(name) has a gradient the reference lacks")
                continue
            }
            let expected = try reference.floatTensor(referenceName)
            var difference: Double
            if name == embeddingName {
                // Only the rows the batch touched are stored; every other row must be zero.
                let rows = try reference.integers("step.\(method).grad_rows." + embeddingName)
                let width = gradient.size(1)
                let gathered = Tensor(shape: [rows.count, width])
                for (index, row) in rows.enumerated() {
                    (gathered.pointer + index * width).update(from: gradient.pointer + row * width, count: width)
                }
                difference = Self.relativeDifference(gathered.pointer, expected)
                let touched = Set(rows)
                let strayRows = (0..<gradient.size(0)).filter { row in
                    !touched.contains(row) && (0..<width).contains { gradient[row * width + $0] != 0 }
                }
                #expect(strayRows.isEmpty, "embedding rows with a gradient the reference lacks: \(strayRows.prefix(5))")
            } else if name.hasSuffix("self_attn.k_proj.bias") {
                // Exactly zero in exact arithmetic: a key bias adds q·b to a whole row of scores,
                // which softmax ignores. Both sides hold rounding noise only (≈1e-9 against ≈0.1
                // for the key weights), so the check is that both are noise next to the weights'.
                let weightScale = try reference.floatTensor(prefix + name.replacingOccurrences(of: ".bias", with: ".weight"))
                    .toArray().map(abs).max()!
                #expect(gradient.toArray().map(abs).max()! < 1e-6 * weightScale, "\(name) is not ~0")
                #expect(expected.toArray().map(abs).max()! < 1e-6 * weightScale, "reference \(name) is not ~0")
                compared += 1
                continue
            } else {
                #expect(gradient.count == expected.count, "\(name): \(gradient.shape) vs \(expected.shape)")
                difference = Self.relativeDifference(gradient.pointer, expected)
            }
            #expect(difference < 1e-3, "\(name): relative difference \(difference)")
            if difference > worst.difference { worst = (name, difference) }
            compared += 1
        }
        let referenceGradients = reference.tensorNames.filter { $0.hasPrefix(prefix) }.count
        #expect(compared == referenceGradients, "compared \(compared) of the reference's \(referenceGradients) gradients")
        print("training parity \(model) \(method): loss \(loss) (reference \(expectedLoss)), \(compared) gradients, worst \(worst.name) \(worst.difference)")

        if method == "pdrop" {
            for sample in 0..<2 {
                for stage in 0..<3 {
                    let expected = try reference.integers("step.pdrop.kept.\(sample).\(stage)")
                    #expect(outcomes[sample].keptImageTokens[stage] == [expected], "sample \(sample) stage \(stage)")
                }
            }
            #expect(outcomes[2].keptImageTokens.isEmpty, "a text-only sample is not dropped")
        }
    }

    @Test(arguments: cases)
    func tenAdamWStepsFollowTheReference(model: String, method: String) throws {
        let reference = try Self.reference(model)
        let (pipeline, samples) = try Self.load(model)
        let settings = OptimizerSettings {
            $0.learningRate = 2e-3
            $0.warmupSteps = 3
            $0.totalSteps = 10
            $0.weightDecay = 0.1
            $0.maxGradientNorm = 1.0
        }
        let trainer = try Trainer(
            pipeline: pipeline, samples: samples, trainable: .all,
            reducer: try Self.reducer(method, layers: pipeline.languageModel.layers.count), optimizer: settings, batchSize: 2)
        let expectedLosses = try reference.floatTensor("adamw.\(method).losses")
        let expectedRates = try reference.floatTensor("adamw.\(method).lr")
        var losses: [Double] = []
        for step in 0..<10 {
            let report = try trainer.trainStep()
            losses.append(report.loss)
            #expect(abs(report.learningRate - Double(expectedRates[step])) <= 1e-9 + 1e-6 * Double(expectedRates[step]), "lr at step \(step)")
            #expect(abs(report.loss - Double(expectedLosses[step])) < 1e-4, "step \(step): loss \(report.loss) vs \(expectedLosses[step])")
        }
        // Parameters after the ten updates (decay, moments, bias corrections, clipping, schedule).
        let finalPrefix = "adamw.\(method).final."
        for referenceName in reference.tensorNames where referenceName.hasPrefix(finalPrefix) {
            let name = String(referenceName.dropFirst(finalPrefix.count))
            let expected = try reference.floatTensor(referenceName)
            let difference = Self.relativeDifference(trainer.model.parameters[name]!.pointer, expected)
            print("adamw \(model) \(method): \(name) after 10 steps, relative difference \(difference)")
            #expect(difference < 1e-4, "\(name) after 10 steps: \(difference)")
        }
        print("adamw \(model) \(method): losses \(losses.map { String(format: "%.6f", $0) }) reference \(expectedLosses.toArray())")
        #expect(losses.last! < losses.first!, "ten steps lower the loss")
    }
}

/// Train, save, load the saved directory for inference: the weights are the trained ones and
/// the inference path (memory-mapped, `LlamaModel.prefill`) computes the same logits as the
/// trainer's own fp32 model.
@Suite struct TrainingCheckpointTests {
    @Test func savedCheckpointLoadsForInferenceWithTheTrainedWeights() throws {
        let (pipeline, samples) = try TrainingParityTests.load()
        let trainer = try Trainer(
            pipeline: pipeline, samples: samples, trainable: [.projector, .language], reducer: NoReduction(),
            optimizer: OptimizerSettings { $0.learningRate = 1e-3; $0.totalSteps = 2 }, batchSize: 2)
        let original = try InferenceSession(directory: Fixtures.url("tiny-llava"))
        for _ in 0..<2 { _ = try trainer.trainStep() }
        let directory = try makeTemporaryDirectory("saved-training")
        defer { try? FileManager.default.removeItem(at: directory) }
        try trainer.save(to: directory)

        let saved = try InferenceSession(directory: directory)
        for (name, tensor) in trainer.model.parameters {
            #expect(maxAbsoluteDifference(try saved.loaded.checkpoint.floatTensor(name), tensor) == 0, "\(name)")
        }
        // Frozen parts are unchanged; trained ones moved.
        let visionName = "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", headName = "language_model.lm_head.weight"
        #expect(maxAbsoluteDifference(try saved.loaded.checkpoint.floatTensor(visionName), try original.loaded.checkpoint.floatTensor(visionName)) == 0)
        #expect(maxAbsoluteDifference(try saved.loaded.checkpoint.floatTensor(headName), try original.loaded.checkpoint.floatTensor(headName)) > 0)

        let prompt = try saved.prepare(prompt: ConversationTemplate.llava15.prompt(question: "What is shown in this image?"),
                                       imageFiles: [Fixtures.url("images/chelsea.jpg")])
        func lastLogits(_ model: LlavaModel, features: [Tensor]) throws -> Tensor {
            let embeddings = try model.embed(tokens: prompt.inputIds, imageFeatures: features)
            let result = model.languageModel.prefill(
                embeddings: embeddings, imageBlocks: prompt.imageBlocks, reducer: NoReduction(), cache: model.languageModel.makeCache(capacity: 600))
            return model.languageModel.logits(result.hidden, rows: (result.hidden.size(0) - 1)..<result.hidden.size(0))
        }
        let trainedFeatures = [trainer.model.llava.imageFeatures(pixelValues: try saved.pixelValues(imageFile: Fixtures.url("images/chelsea.jpg")))]
        let fromFile = try lastLogits(saved.llava, features: prompt.imageFeatures)
        let inMemory = try lastLogits(trainer.model.llava, features: trainedFeatures)
        #expect(maxAbsoluteDifference(fromFile, inMemory) < 1e-5)
        // config.json says the weights are now fp32.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json"))) as? [String: Any]
        #expect(config?["torch_dtype"] as? String == "float32")
    }
}
