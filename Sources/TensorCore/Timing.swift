extension Duration {
    /// The duration in seconds, as a Double (for reports and ratios).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
