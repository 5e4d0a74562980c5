import Engine
import Foundation
import TensorCore
import Testing
import TestSupport

/// The filtered distribution, computed directly in Double from the definitions: scores =
/// logits / temperature; top-k keeps scores >= the k-th largest; top-p keeps the smallest set
/// of most probable tokens whose probabilities reach topP. logits is (vocab,).
private func directProbabilities(_ logits: [Float], temperature: Double, topK: Int = 0, topP: Double = 1) -> [Double] {
    let scores = logits.map { Double($0) / temperature }
    func softmax(over kept: [Int]) -> [Double] {
        let largest = kept.map { scores[$0] }.max()!
        var probabilities = [Double](repeating: 0, count: scores.count)
        for id in kept { probabilities[id] = exp(scores[id] - largest) }
        let total = probabilities.reduce(0, +)
        return probabilities.map { $0 / total }
    }
    var kept = Array(scores.indices)
    if topK > 0, topK < scores.count {
        let kthScore = scores.sorted(by: >)[topK - 1]
        kept = kept.filter { scores[$0] >= kthScore }
    }
    if topP < 1 {
        let probabilities = softmax(over: kept)
        var cumulative = 0.0
        var nucleus: [Int] = []
        for id in kept.sorted(by: { probabilities[$0] > probabilities[$1] }) where cumulative < topP {
            nucleus.append(id)
            cumulative += probabilities[id]
        }
        kept = nucleus
    }
    return softmax(over: kept)
}

private func probabilities(_ logits: [Float], _ parameters: SamplingParameters) -> [Float] {
    logits.withUnsafeBufferPointer { TokenSampler.probabilities(logits: $0, parameters: parameters) }
}

private func randomLogits(count: Int, generator: inout SplitMix64, scale: Float = 4) -> [Float] {
    (0..<count).map { _ in Float.random(in: -scale...scale, using: &generator) }
}

/// Ids with a non-zero probability.
private func support(_ probabilities: [Float]) -> [Int] {
    probabilities.indices.filter { probabilities[$0] > 0 }
}

@Suite struct SamplingParametersTests {
    @Test func defaultsAreGreedyWithFiltersOff() throws {
        let parameters = SamplingParameters()
        #expect(parameters == SamplingParameters(temperature: 0, topK: 0, topP: 1, seed: nil))
        #expect(parameters.isGreedy)
        try parameters.validate()
        try SamplingParameters(temperature: 1.5, topK: 40, topP: 1, seed: 7).validate()
        try SamplingParameters(temperature: 0.01, topK: 1, topP: 0.001).validate()
    }

    @Test func eachBadValueIsNamed() {
        #expect(throws: SamplingError.invalidTemperature(-0.5)) { try SamplingParameters(temperature: -0.5).validate() }
        #expect(throws: SamplingError.invalidTemperature(.infinity)) {
            try SamplingParameters(temperature: .infinity).validate()
        }
        #expect(throws: SamplingError.invalidTopK(-1)) { try SamplingParameters(topK: -1).validate() }
        #expect(throws: SamplingError.invalidTopP(0)) { try SamplingParameters(topP: 0).validate() }
        #expect(throws: SamplingError.invalidTopP(1.5)) { try SamplingParameters(topP: 1.5).validate() }
        #expect(throws: SamplingError.invalidTopP(-0.2)) { try SamplingParameters(topP: -0.2).validate() }
        // NaN is not equal to itself, so the cases are matched rather than compared.
        let nanTemperature = #expect(throws: SamplingError.self) { try SamplingParameters(temperature: .nan).validate() }
        let nanTopP = #expect(throws: SamplingError.self) { try SamplingParameters(topP: .nan).validate() }
        guard case let .invalidTemperature(temperature)? = nanTemperature, case let .invalidTopP(topP)? = nanTopP else {
            Issue.record("NaN settings gave \(String(describing: nanTemperature)), \(String(describing: nanTopP))")
            return
        }
        #expect(temperature.isNaN && topP.isNaN)
        #expect(SamplingError.invalidTopK(-3).description.contains("-3"))
        #expect(SamplingError.invalidTopP(1.5).description.contains("top_p"))
    }

    @Test func samplerRefusesBadParameters() {
        #expect(throws: SamplingError.invalidTemperature(-1)) { _ = try TokenSampler(SamplingParameters(temperature: -1)) }
        #expect(throws: SamplingError.invalidTopK(-2)) { _ = try TokenSampler(SamplingParameters(temperature: 1, topK: -2)) }
    }

    @Test func decodingFillsAbsentKeysWithDefaultsAndRoundTrips() throws {
        let decoder = JSONDecoder()
        let partial = try decoder.decode(SamplingParameters.self, from: Data(#"{"temperature": 0.5, "top_p": 0.9}"#.utf8))
        #expect(partial == SamplingParameters(temperature: 0.5, topK: 0, topP: 0.9, seed: nil))
        #expect(try decoder.decode(SamplingParameters.self, from: Data("{}".utf8)) == SamplingParameters())
        let full = SamplingParameters(temperature: 0.8, topK: 50, topP: 0.95, seed: 12_345_678_901_234)
        let encoded = try JSONEncoder().encode(full)
        let keys = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any]).keys
        #expect(Set(keys) == ["temperature", "top_k", "top_p", "seed"])
        #expect(try decoder.decode(SamplingParameters.self, from: encoded) == full)
    }
}

@Suite struct TokenSamplerTests {
    @Test func greedyIsArgmaxWithTiesToTheLowestId() throws {
        var sampler = try TokenSampler(SamplingParameters())
        let tied: [Float] = [1, 3, -2, 3, 2]
        #expect(tied.withUnsafeBufferPointer { sampler.next(logits: $0) } == 1)
        #expect(probabilities(tied, SamplingParameters()) == [0, 1, 0, 0, 0])
        var generator = SplitMix64(seed: 3)
        for _ in 0..<50 {
            let logits = randomLogits(count: 300, generator: &generator)
            #expect(logits.withUnsafeBufferPointer { sampler.next(logits: $0) } == argmax(logits, count: logits.count))
        }
    }

    @Test func temperatureAloneIsTheSoftmaxOfScaledLogits() {
        var generator = SplitMix64(seed: 11)
        for temperature: Float in [0.3, 1, 2.5] {
            let logits = randomLogits(count: 64, generator: &generator)
            let computed = probabilities(logits, SamplingParameters(temperature: temperature))
            let direct = directProbabilities(logits, temperature: Double(temperature))
            #expect(computed.count == 64)
            #expect(zip(computed, direct).allSatisfy { abs(Double($0) - $1) < 1e-6 })
            #expect(abs(computed.reduce(0, +) - 1) < 1e-5)
        }
    }

    @Test func topKKeepsTheKLargestAndEveryTieAtTheKth() {
        let logits: [Float] = [0.5, 2, -1, 3, 1, 2]
        let topTwo = probabilities(logits, SamplingParameters(temperature: 1, topK: 2))
        #expect(support(topTwo) == [1, 3, 5])  // 3, then 2 twice: the tie at the 2nd value stays
        let topOne = probabilities(logits, SamplingParameters(temperature: 1, topK: 1))
        #expect(topOne == [0, 0, 0, 1, 0, 0])
        let direct = directProbabilities(logits, temperature: 1, topK: 2)
        #expect(zip(topTwo, direct).allSatisfy { abs(Double($0) - $1) < 1e-6 })
        // topK at or beyond the vocabulary keeps everything.
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topK: 6))).count == 6)
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topK: 100))).count == 6)
    }

    @Test func topPKeepsTheSmallestSetReachingP() {
        // Probabilities 0.5, 0.3, 0.15, 0.05 (ids out of order on purpose).
        let logits = [0.15, 0.5, 0.05, 0.3].map { Float(log($0)) }
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topP: 0.4))) == [1])
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topP: 0.75))) == [1, 3])
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topP: 0.9))) == [0, 1, 3])
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topP: 0.99))) == [0, 1, 2, 3])
        // The most probable token stays however small topP is.
        #expect(probabilities(logits, SamplingParameters(temperature: 1, topP: 1e-6)) == [0, 1, 0, 0])
        let kept = probabilities(logits, SamplingParameters(temperature: 1, topP: 0.75))
        #expect(abs(kept[1] - 0.625) < 1e-6 && abs(kept[3] - 0.375) < 1e-6)
    }

    /// Random logits against the direct computation, skipping draws where a cumulative
    /// probability lies so near topP that fp32 and Double may disagree on the boundary.
    @Test func filtersMatchTheDirectComputationOnRandomLogits() {
        var generator = SplitMix64(seed: 2024)
        var compared = 0
        for trial in 0..<200 {
            let logits = randomLogits(count: 50, generator: &generator, scale: 3)
            let temperature = [0.5, 1, 1.7][trial % 3]
            let topK = [0, 5, 20, 49][trial % 4]
            let topP = [1, 0.3, 0.6, 0.9, 0.97][trial % 5]
            let afterTopK = directProbabilities(logits, temperature: temperature, topK: topK)
            var cumulative = 0.0
            let nearBoundary = afterTopK.sorted(by: >).contains { probability in
                cumulative += probability
                return abs(cumulative - topP) < 1e-4
            }
            if topP < 1, nearBoundary { continue }
            let parameters = SamplingParameters(temperature: Float(temperature), topK: topK, topP: Float(topP))
            let computed = probabilities(logits, parameters)
            let direct = directProbabilities(logits, temperature: temperature, topK: topK, topP: topP)
            #expect(support(computed) == direct.indices.filter { direct[$0] > 0 }, "trial \(trial)")
            #expect(zip(computed, direct).allSatisfy { abs(Double($0) - $1) < 1e-5 }, "trial \(trial)")
            compared += 1
        }
        #expect(compared > 180)
    }

    /// Top-k before top-p, as transformers orders its warpers: the other order keeps two tokens.
    @Test func topKRunsBeforeTopP() {
        let logits = [0.4, 0.3, 0.2, 0.1].map { Float(log($0)) }
        // After top-k (2): 0.571, 0.429; top-p 0.5 then keeps only the first.
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topK: 2, topP: 0.5))) == [0])
        // Temperature comes first too: at 1 the first token (0.4) reaches 0.35 alone; at 10 the
        // four are nearly equal (0.265 the largest) and it takes two.
        #expect(support(probabilities(logits, SamplingParameters(temperature: 1, topP: 0.35))) == [0])
        #expect(support(probabilities(logits, SamplingParameters(temperature: 10, topP: 0.35))) == [0, 1])
    }

    @Test func brokenLogitsGiveAOneHotInsteadOfNaN() {
        let withNaN: [Float] = [1, .nan, 2, 0]
        let sampled = probabilities(withNaN, SamplingParameters(temperature: 1))
        #expect(sampled[1] == 0 && sampled.allSatisfy { !$0.isNaN })
        #expect(abs(sampled.reduce(0, +) - 1) < 1e-6)
        let allMasked = [Float](repeating: -.infinity, count: 4)
        #expect(probabilities(allMasked, SamplingParameters(temperature: 1)) == [1, 0, 0, 0])
        // A temperature so small that the scores overflow: the limit, greedy.
        #expect(probabilities([1, 3, 2], SamplingParameters(temperature: 1e-38)) == [0, 1, 0])
        #expect(probabilities([.infinity, 0, .infinity], SamplingParameters(temperature: 1)) == [1, 0, 0])
    }

    @Test func aSeedReproducesTheDrawsAndTheDrawIsTheDocumentedOne() throws {
        var generator = SplitMix64(seed: 5)
        let logits = randomLogits(count: 200, generator: &generator, scale: 2)
        let parameters = SamplingParameters(temperature: 0.9, topK: 40, topP: 0.9, seed: 99)
        var first = try TokenSampler(parameters)
        var second = try TokenSampler(parameters)
        var other = try TokenSampler(SamplingParameters(temperature: 0.9, topK: 40, topP: 0.9, seed: 100))
        let firstDraws = (0..<100).map { _ in logits.withUnsafeBufferPointer { first.next(logits: $0) } }
        let secondDraws = (0..<100).map { _ in logits.withUnsafeBufferPointer { second.next(logits: $0) } }
        let otherDraws = (0..<100).map { _ in logits.withUnsafeBufferPointer { other.next(logits: $0) } }
        #expect(firstDraws == secondDraws)
        #expect(firstDraws != otherDraws)
        #expect(Set(firstDraws).count > 5)

        // The same draws by hand: u = (next() >> 11) · 2^-53, first id whose running sum exceeds u.
        let distribution = probabilities(logits, parameters)
        var uniforms = SplitMix64(seed: 99)
        let byHand = (0..<100).map { _ -> Int in
            let threshold = Double(uniforms.next() >> 11) * 0x1p-53 * distribution.reduce(0.0) { $0 + Double($1) }
            var runningSum = 0.0
            return distribution.indices.first { id in
                runningSum += Double(distribution[id])
                return distribution[id] > 0 && runningSum > threshold
            }!
        }
        #expect(firstDraws == byHand)
    }

    @Test func drawFrequenciesFollowTheFilteredDistribution() throws {
        let logits: [Float] = [1, 2.5, 0, 2, -1, 1.5]
        let parameters = SamplingParameters(temperature: 0.8, topK: 4, topP: 0.95, seed: 1)
        let distribution = probabilities(logits, parameters)
        var sampler = try TokenSampler(parameters)
        let draws = 40_000
        var counts = [Int](repeating: 0, count: logits.count)
        for _ in 0..<draws { counts[logits.withUnsafeBufferPointer { sampler.next(logits: $0) }] += 1 }
        for id in logits.indices {
            if distribution[id] == 0 {
                #expect(counts[id] == 0, "filtered id \(id) was drawn")
            } else {
                // Four standard deviations of a binomial proportion at most 0.0025 here.
                #expect(abs(Double(counts[id]) / Double(draws) - Double(distribution[id])) < 0.01, "id \(id)")
            }
        }
        #expect(support(distribution).count >= 3)
    }

    @Test func withoutASeedRunsDiffer() throws {
        let logits = [Float](repeating: 0, count: 1000)
        var first = try TokenSampler(SamplingParameters(temperature: 1))
        var second = try TokenSampler(SamplingParameters(temperature: 1))
        let firstDraws = (0..<20).map { _ in logits.withUnsafeBufferPointer { first.next(logits: $0) } }
        let secondDraws = (0..<20).map { _ in logits.withUnsafeBufferPointer { second.next(logits: $0) } }
        // Equal only if the system generator gave the same seed twice (about 2^-64) or twenty
        // uniform draws over 1000 ids coincided.
        #expect(firstDraws != secondDraws)
    }
}
