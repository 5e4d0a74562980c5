import Foundation
import TensorCore

/// A sampling setting outside its range, naming the setting and the value it was given.
public enum SamplingError: Error, Equatable, CustomStringConvertible {
    /// temperature is negative, NaN or infinite.
    case invalidTemperature(Float)
    /// topK is negative.
    case invalidTopK(Int)
    /// topP is not in (0, 1] (or is NaN).
    case invalidTopP(Float)

    public var description: String {
        switch self {
        case let .invalidTemperature(value):
            return "temperature must be a finite number >= 0 (0 is greedy decoding); got \(value)"
        case let .invalidTopK(value):
            return "top_k must be >= 0 (0 keeps every token); got \(value)"
        case let .invalidTopP(value):
            return "top_p must be in (0, 1] (1 keeps every token); got \(value)"
        }
    }
}

/// How the next token is chosen from logits, with the meaning transformers' `generate` gives
/// these settings, so a request behaves the same on this engine and on the reference.
/// temperature 0 (the default) is greedy: argmax, ties to the lowest id, exactly the engine's
/// greedy decoding. A request that leaves a key out gets its default; the keys are the
/// OpenAI / vLLM request names.
public struct SamplingParameters: Equatable, Sendable, Codable {
    /// Logits are divided by it before the softmax; 0 means greedy decoding.
    public var temperature: Float
    /// Keep only the tokens whose scaled logit is at least the k-th largest (ties at the k-th
    /// value all stay, as in transformers' `TopKLogitsWarper`); 0 turns the filter off.
    public var topK: Int
    /// Keep the smallest set of most probable tokens whose probabilities add up to at least
    /// topP (never fewer than one token); 1 turns the filter off.
    public var topP: Float
    /// Seed of the random draws; nil takes one from the system's generator, so runs differ.
    public var seed: UInt64?

    /// The defaults are greedy decoding with both filters off.
    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    /// Whether the next token is the argmax (no randomness, the filters do not matter).
    public var isGreedy: Bool { temperature == 0 }

    /// Throws the first setting outside its range, so a bad request is refused before any
    /// work instead of producing NaN probabilities.
    public func validate() throws(SamplingError) {
        guard temperature.isFinite, temperature >= 0 else { throw .invalidTemperature(temperature) }
        guard topK >= 0 else { throw .invalidTopK(topK) }
        guard topP > 0, topP <= 1 else { throw .invalidTopP(topP) }
    }

    enum CodingKeys: String, CodingKey {
        case temperature
        case topK = "top_k"
        case topP = "top_p"
        case seed
    }

    /// Absent keys take the defaults (a request names only what it changes). Values are not
    /// range-checked here: call `validate()`.
    public init(from decoder: any Swift.Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = SamplingParameters()
        temperature = try container.decodeIfPresent(Float.self, forKey: .temperature) ?? defaults.temperature
        topK = try container.decodeIfPresent(Int.self, forKey: .topK) ?? defaults.topK
        topP = try container.decodeIfPresent(Float.self, forKey: .topP) ?? defaults.topP
        seed = try container.decodeIfPresent(UInt64.self, forKey: .seed)
    }
}

/// Chooses each next token from a step's logits: the argmax for greedy parameters, otherwise
/// one draw from the filtered distribution of `probabilities(logits:parameters:)`. Holds the
/// random generator, so one sampler serves one generation and a seed reproduces it.
public struct TokenSampler {
    public let parameters: SamplingParameters
    private var generator: SplitMix64

    /// Refuses parameters outside their ranges (see `SamplingParameters.validate()`).
    public init(_ parameters: SamplingParameters) throws(SamplingError) {
        try parameters.validate()
        self.parameters = parameters
        var system = SystemRandomNumberGenerator()
        generator = SplitMix64(seed: parameters.seed ?? system.next())
    }

    /// The next token id. logits is (vocab,) and must not be empty.
    ///
    /// The draw takes one uniform u = (next() >> 11) · 2⁻⁵³ from SplitMix64 and returns the first
    /// id whose running sum of probabilities (in id order, accumulated in Double) exceeds
    /// u · total, so a seeded run can be reproduced outside Swift.
    public mutating func next(logits: UnsafeBufferPointer<Float>) -> Int {
        precondition(!logits.isEmpty, "TokenSampler.next needs the logits of at least one token")
        if parameters.isGreedy { return argmax(logits.baseAddress!, count: logits.count) }
        let probabilities = Self.probabilities(logits: logits, parameters: parameters)  // (vocab,)
        let uniform = Double(generator.next() >> 11) * 0x1p-53
        let threshold = uniform * probabilities.reduce(0.0) { $0 + Double($1) }
        var runningSum = 0.0
        var lastCandidate = 0
        for (id, probability) in probabilities.enumerated() where probability > 0 {
            runningSum += Double(probability)
            if runningSum > threshold { return id }
            lastCandidate = id
        }
        // Rounding left the running sum at or below the threshold: the last kept token.
        return lastCandidate
    }

    /// The distribution the next token is drawn from, (vocab,) and zero for filtered-out ids,
    /// computed as transformers' logits processors do: scores = logits / temperature, then
    /// top-k, then top-p, then a softmax in fp32 after subtracting the largest kept score.
    /// Greedy parameters, and scores whose largest value is not finite (a broken model, or a
    /// temperature so small that a score overflows), give a one-hot vector at the argmax.
    /// logits is (vocab,).
    public static func probabilities(logits: UnsafeBufferPointer<Float>, parameters: SamplingParameters) -> [Float] {
        guard let base = logits.baseAddress else { return [] }
        if parameters.isGreedy { return oneHot(at: argmax(base, count: logits.count), count: logits.count) }
        // A NaN logit can never be drawn (and would break the sort's ordering).
        var scores = logits.map { $0.isNaN ? -.infinity : $0 / parameters.temperature }  // (vocab,)
        let best = argmax(scores, count: scores.count)
        guard scores[best].isFinite else { return oneHot(at: best, count: scores.count) }
        let filtersOn = parameters.topK > 0 || parameters.topP < 1
        if filtersOn {
            // Ids by descending score, ties to the lower id, so both filters keep lower ids
            // first where transformers' unstable sort leaves the order open.
            let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            var keptCount = order.count
            if parameters.topK > 0, parameters.topK < order.count {
                let kthScore = scores[order[parameters.topK - 1]]
                keptCount = order.prefix { scores[$0] >= kthScore }.count
            }
            if parameters.topP < 1 {
                keptCount = topPKeptCount(sortedScores: order.prefix(keptCount).map { scores[$0] }, topP: parameters.topP)
            }
            for id in order.dropFirst(keptCount) { scores[id] = -.infinity }
        }
        softmaxInPlace(&scores)
        return scores
    }

    /// (count,): 1 at index, 0 elsewhere.
    private static func oneHot(at index: Int, count: Int) -> [Float] {
        var probabilities = [Float](repeating: 0, count: count)
        probabilities[index] = 1
        return probabilities
    }

    /// How many of sortedScores (kept, descending) top-p keeps, as `TopPLogitsWarper`: in
    /// ascending order, drop each token while the cumulative probability up to and including it
    /// is <= 1 - topP; the most probable token always stays.
    private static func topPKeptCount(sortedScores: [Float], topP: Float) -> Int {
        var probabilities = sortedScores  // (kept,)
        softmaxInPlace(&probabilities)
        var cumulative: Float = 0
        var dropped = 0
        for probability in probabilities.dropFirst().reversed() {
            cumulative += probability
            if cumulative > 1 - topP { break }
            dropped += 1
        }
        return probabilities.count - dropped
    }

    /// values = softmax(values) in fp32 after subtracting the largest value; -inf entries get 0.
    /// values is (count,) with a finite largest value.
    private static func softmaxInPlace(_ values: inout [Float]) {
        let largest = values.max() ?? 0
        var total: Float = 0
        for index in values.indices {
            values[index] = expf(values[index] - largest)
            total += values[index]
        }
        for index in values.indices { values[index] /= total }
    }
}
