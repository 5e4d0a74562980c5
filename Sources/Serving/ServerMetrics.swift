import Engine
import Prometheus

/// The server's Prometheus metrics (`GET /metrics`, text format 0.0.4), named as llama.cpp's
/// server names its own (`pdrop:` prefix, counters ending in `_total`).
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let requests: Counter
    private let requestsFailed: Counter
    private let requestsRejected: Counter
    private let requestsCancelled: Counter
    private let promptTokens: Counter
    private let generatedTokens: Counter
    private let prefillSeconds: Counter
    private let decodeSeconds: Counter
    private let imageTokens: Counter
    private let imageTokensKept: Counter
    private let imageTokensDropped: Counter
    private let queued: Gauge

    public init() {
        let registry = self.registry
        // pdrop_<name>_total
        func counter(_ name: String, _ help: String) -> Counter {
            registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "pdrop", metricName: name, unitName: "total", helpText: help))
        }
        requests = counter("requests", "Chat completion requests finished (any stop reason).")
        requestsFailed = counter("requests_failed", "Requests the engine refused or failed.")
        requestsRejected = counter("requests_rejected", "Requests refused because the queue was full.")
        requestsCancelled = counter("requests_cancelled", "Requests stopped by their client.")
        promptTokens = counter("prompt_tokens", "Prompt tokens prefilled, image tokens included.")
        generatedTokens = counter("generated_tokens", "Tokens generated.")
        prefillSeconds = counter("prefill_seconds", "Seconds of prefill (vision tower and language model).")
        decodeSeconds = counter("decode_seconds", "Seconds requests spent decoding (batched steps overlap).")
        imageTokens = counter("image_tokens", "Image tokens entering the language model.")
        imageTokensKept = counter("image_tokens_kept", "Image tokens left after a request's last drop.")
        imageTokensDropped = counter("image_tokens_dropped", "Image tokens dropped by the reduction.")
        queued = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "pdrop", metricName: "queue_depth", unitName: "", helpText: "Requests waiting for a decode slot."))
    }

    func rejected() { requestsRejected.increment() }
    func failed() { requestsFailed.increment() }
    func queueDepth(_ depth: Int) { queued.set(Double(depth)) }

    func prefilled(_ report: PrefillReport) {
        promptTokens.increment(by: Int64(report.promptTokens))
        prefillSeconds.increment(by: report.visionSeconds + report.prefillSeconds)
        imageTokens.increment(by: Int64(report.imageTokens))
        let kept = report.keptImageTokensPerDrop.last ?? report.imageTokens
        imageTokensKept.increment(by: Int64(kept))
        imageTokensDropped.increment(by: Int64(report.imageTokens - kept))
    }

    func finished(_ result: GenerationResult) {
        requests.increment()
        if result.stopReason == .cancelled { requestsCancelled.increment() }
        generatedTokens.increment(by: Int64(result.tokens.count))
        decodeSeconds.increment(by: result.decodeSeconds)
    }

    /// The text exposition of every metric.
    public func exposition() -> String { registry.emitToString() }
}
