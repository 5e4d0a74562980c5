import Foundation
import TensorCore

/// The optimizer's settings, with LLaVA's / torch's defaults.
public struct OptimizerSettings: Equatable, Sendable, Codable {
    public var learningRate: Double = 2e-5
    /// Peak learning rate of the vision tower's parameters, on the same schedule (LLaVA-NeXT's
    /// `mm_vision_tower_lr`); nil: `learningRate`.
    public var visionLearningRate: Double?
    public var warmupSteps: Int = 0
    /// Steps of the whole run: the cosine decays to 0 at this step.
    public var totalSteps: Int = 1
    public var weightDecay: Double = 0
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-8
    /// Global gradient-norm clipping; nil or ≤ 0 disables it.
    public var maxGradientNorm: Double? = 1.0

    public init(_ adjust: (inout OptimizerSettings) -> Void = { _ in }) { adjust(&self) }

    /// transformers' `get_cosine_schedule_with_warmup` at optimizer step `step` (0-based).
    public func learningRate(atStep step: Int) -> Double {
        learningRate * scheduleFactor(atStep: step)
    }

    /// The vision tower's learning rate at optimizer step `step`.
    public func visionLearningRate(atStep step: Int) -> Double {
        (visionLearningRate ?? learningRate) * scheduleFactor(atStep: step)
    }

    /// The schedule's multiplier of the peak rate: linear warm-up, then cosine to 0.
    func scheduleFactor(atStep step: Int) -> Double {
        if step < warmupSteps { return Double(step) / Double(max(1, warmupSteps)) }
        let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        return max(0, 0.5 * (1 + cos(Double.pi * progress)))
    }

    public func validate() throws {
        func check(_ condition: Bool, _ message: String) throws {
            if !condition { throw TrainingSettingError.invalid(message) }
        }
        try check(learningRate.isFinite && learningRate >= 0, "--lr must be a finite number ≥ 0, got \(learningRate)")
        if let visionLearningRate {
            try check(visionLearningRate.isFinite && visionLearningRate >= 0, "--vision-lr must be a finite number ≥ 0, got \(visionLearningRate)")
        }
        try check(totalSteps >= 1, "--steps must be at least 1, got \(totalSteps)")
        try check(warmupSteps >= 0, "--warmup-steps must be ≥ 0, got \(warmupSteps)")
        try check(weightDecay.isFinite && weightDecay >= 0, "--weight-decay must be ≥ 0, got \(weightDecay)")
        try check((0..<1).contains(beta1) && (0..<1).contains(beta2), "Adam betas must lie in [0, 1)")
        try check(epsilon > 0, "Adam epsilon must be > 0")
        if let maxGradientNorm { try check(maxGradientNorm.isFinite, "--max-grad-norm must be finite") }
    }
}

/// AdamW as `torch.optim.AdamW` (single-tensor path), with decoupled weight decay on tensors of
/// two or more dimensions only, and the global-norm clipping of `clip_grad_norm_` before it.
public final class AdamW {
    public let settings: OptimizerSettings
    /// Trained parameter names, in update order.
    public let names: [String]
    /// First and second moments by name, shaped like the parameters.
    public private(set) var firstMoments: [String: Tensor] = [:]
    public private(set) var secondMoments: [String: Tensor] = [:]
    /// Updates done so far (torch's `step` state).
    public private(set) var step = 0
    /// The parameters that follow `settings.visionLearningRate` (their own group, as LLaVA-NeXT's).
    public let visionNames: Set<String>

    public init(settings: OptimizerSettings, names: [String], parameters: [String: Tensor], visionNames: Set<String> = []) {
        self.settings = settings
        self.names = names
        self.visionNames = visionNames
        for name in names {
            firstMoments[name] = Tensor(shape: parameters[name]!.shape)
            secondMoments[name] = Tensor(shape: parameters[name]!.shape)
        }
    }

    /// Restores the state of a run being resumed.
    public func restore(step: Int, firstMoments: [String: Tensor], secondMoments: [String: Tensor]) {
        self.step = step
        for name in names {
            if let moment = firstMoments[name] { self.firstMoments[name] = moment }
            if let moment = secondMoments[name] { self.secondMoments[name] = moment }
        }
    }

    /// The global L2 norm of the gradients of `names` (default: every trained parameter).
    public func gradientNorm(_ gradients: [String: Tensor], names: [String]? = nil) -> Double {
        var total = 0.0
        for name in names ?? self.names {
            let gradient = gradients[name]!
            var sum = 0.0
            for i in 0..<gradient.count { sum += Double(gradient[i]) * Double(gradient[i]) }
            total += sum
        }
        return total.squareRoot()
    }

    /// Clips, then updates `parameters` in place from `gradients`; returns the norm before
    /// clipping and the learning rate used. `skipping` names parameters that got no gradient this
    /// step (PyTorch's None): no decay, no moment update, left out of the norm.
    @discardableResult
    public func update(
        parameters: [String: Tensor], gradients: [String: Tensor], skipping: Set<String> = []
    ) -> (gradientNorm: Double, learningRate: Double) {
        let updated = names.filter { !skipping.contains($0) }
        let norm = gradientNorm(gradients, names: updated)
        var clip: Float = 1
        if let maximum = settings.maxGradientNorm, maximum > 0 {
            clip = Float(min(1, maximum / (norm + 1e-6)))
        }
        let learningRate = settings.learningRate(atStep: step), visionLearningRate = settings.visionLearningRate(atStep: step)
        step += 1
        // The scalars are computed in Double and rounded once, as Python floats reach torch's kernels.
        let oneMinusBeta1 = Float(1 - settings.beta1), beta2 = Float(settings.beta2), oneMinusBeta2 = Float(1 - settings.beta2)
        let biasCorrection1 = 1 - pow(settings.beta1, Double(step))
        let biasCorrection2Root = (1 - pow(settings.beta2, Double(step))).squareRoot()
        let epsilon = Float(settings.epsilon)
        for name in updated {
            let parameter = parameters[name]!, gradient = gradients[name]!
            let m = firstMoments[name]!, v = secondMoments[name]!
            let groupRate = visionNames.contains(name) ? visionLearningRate : learningRate
            let stepSize = Float(groupRate / biasCorrection1)
            let decay = parameter.shape.count >= 2 ? Float(1 - groupRate * settings.weightDecay) : 1
            let p = parameter.pointer, g = gradient.pointer, mp = m.pointer, vp = v.pointer
            let correction2 = Float(biasCorrection2Root)
            ThreadPool.parallelFor(parameter.count, minimumPerThread: 1 << 14) { range in
                for i in range {
                    let grad = g[i] * clip
                    p[i] *= decay
                    mp[i] += oneMinusBeta1 * (grad - mp[i])
                    vp[i] = vp[i] * beta2 + oneMinusBeta2 * (grad * grad)
                    let denominator = vp[i].squareRoot() / correction2 + epsilon
                    p[i] += -stepSize * (mp[i] / denominator)
                }
            }
        }
        return (norm, learningRate)
    }
}
