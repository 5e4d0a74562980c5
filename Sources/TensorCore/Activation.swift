/// The element-wise activations the models use, as config.json names them (`hidden_act`,
/// `projector_hidden_act`). Decoded once; the kernels are chosen here and nowhere else.
public enum Activation: String, Codable, Sendable, CaseIterable {
    /// x · Φ(x) with the exact erf (torch's default GELU).
    case gelu
    /// x · σ(1.702 x), CLIP's.
    case quickGelu = "quick_gelu"
    /// x · σ(x); LLaMA's MLP uses it only inside SwiGLU (`swigluForward`).
    case silu

    /// values(count) = activation(values), in place. SiLU alone is not a kernel of its own here.
    public func forward(_ values: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .gelu: geluForward(values, count: count)
        case .quickGelu: quickGeluForward(values, count: count)
        case .silu: preconditionFailure("SiLU runs fused in swigluForward")
        }
    }

    /// dinput(count) += doutput · activation'(input).
    public func backward(_ dinput: UnsafeMutablePointer<Float>, doutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        switch self {
        case .gelu: geluBackward(dinput, doutput: doutput, input: input, count: count)
        case .quickGelu: quickGeluBackward(dinput, doutput: doutput, input: input, count: count)
        case .silu: preconditionFailure("SiLU runs fused in swigluBackward")
        }
    }
}
