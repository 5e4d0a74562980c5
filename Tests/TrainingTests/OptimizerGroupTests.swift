import Testing
import TensorCore
@testable import Training

/// The vision tower's own learning rate (`--vision-lr`, LLaVA-NeXT's mm_vision_tower_lr): its
/// parameters follow the same warm-up and cosine at their own peak; the others are unchanged.
@Suite struct OptimizerGroupTests {
    @Test func visionParametersStepAtTheirOwnRate() throws {
        let settings = OptimizerSettings {
            $0.learningRate = 1e-3; $0.visionLearningRate = 1e-4; $0.warmupSteps = 2; $0.totalSteps = 10; $0.maxGradientNorm = nil
            $0.weightDecay = 0.1
        }
        try settings.validate()
        for step in 0..<10 {
            #expect(abs(settings.visionLearningRate(atStep: step) - settings.learningRate(atStep: step) / 10) < 1e-18)
        }
        let names = ["language.weight", "vision.weight"]
        let parameters = ["language.weight": Tensor(shape: [2, 2], values: [1, 1, 1, 1]), "vision.weight": Tensor(shape: [2, 2], values: [1, 1, 1, 1])]
        let gradients = ["language.weight": Tensor(shape: [2, 2], values: [0.5, -2, 3, -0.25]), "vision.weight": Tensor(shape: [2, 2], values: [0.5, -2, 3, -0.25])]
        let optimizer = AdamW(settings: settings, names: names, parameters: parameters, visionNames: ["vision.weight"])
        optimizer.update(parameters: parameters, gradients: gradients)  // step 0 of the warm-up: rate 0
        optimizer.update(parameters: parameters, gradients: gradients)  // rate ½ of the peak
        // Two Adam steps with the same gradient move each value by about 2 · rate · sign(g) (rate 0 then
        // half the peak), after a decay of (1 − rate · 0.1); the vision tensor by a tenth of that.
        let language = parameters["language.weight"]!.toArray().map { 1 - $0 }, vision = parameters["vision.weight"]!.toArray().map { 1 - $0 }
        for (l, v) in zip(language, vision) {
            #expect(abs(l) > 4e-4 && abs(l) < 6e-4, "language moved \(l)")
            #expect(abs(v * 10 - l) < 1e-6, "vision moved \(v), a tenth of \(l)")
        }
    }

    @Test func invalidVisionRateIsRefused() {
        #expect(throws: TrainingSettingError.self) { try OptimizerSettings { $0.visionLearningRate = -1 }.validate() }
        #expect(throws: TrainingSettingError.self) { try OptimizerSettings { $0.visionLearningRate = .nan }.validate() }
    }
}
