import TensorCore
import TokenReduction

/// Errors of running the decoder on bad input (token ids, lengths).
public enum DecoderInputError: Error, Equatable, CustomStringConvertible {
    case tokenOutOfRange(position: Int, token: Int, vocabularySize: Int)
    case emptyInput

    public var description: String {
        switch self {
        case let .tokenOutOfRange(position, token, vocabularySize):
            return "token id \(token) at position \(position) is outside the vocabulary (0..<\(vocabularySize))"
        case .emptyInput: return "no input tokens"
        }
    }
}

/// What prefill with reduction, decoding and the pyramid cache need of a family's language
/// model (llama.cpp's per-architecture graph behind one interface). Everything written over it
/// (`prefill`, `decodeStep`, the reduction driver, the session) names no family.
public protocol LanguageDecoder: AnyObject {
    /// Sizes for FLOPs and budgets.
    var shape: DecoderShape { get }
    /// `max_position_embeddings`: the longest sequence it was trained for.
    var contextLength: Int { get }
    /// Ids that end generation.
    var endOfSequenceIds: Set<Int> { get }
    /// Rotary axes of its positions (1 for RoPE, 3 for M-RoPE).
    var positionAxes: Int { get }

    /// A fresh cache sized for `capacity` tokens per layer (it grows if needed).
    func makeCache(capacity: Int) -> KVCache
    /// Rows of the embedding table: (tokens.count, hidden).
    func embed(_ tokens: [Int]) throws -> Tensor
    /// Runs decoder layer `index` in place on hidden(tokens, hidden) at `positions`, appending the
    /// tokens' keys and values to `cache` (which holds the earlier tokens this layer has seen).
    func runLayer(_ index: Int, hidden: Tensor, positions: Positions, cache: LayerKVCache)
    /// Runs decoder layer `index` in place on one new token of each of several sequences:
    /// hidden(sequences, hidden), row s at position s of `positions`, its key and value appended
    /// to `caches[s]` and attending over that cache only. Each weight is read once for all rows
    /// (batched decoding: the decode step is bound by reading the weights).
    func runLayer(_ index: Int, hidden: Tensor, positions: Positions, caches: [LayerKVCache])
    /// Attention (tokens,) that each row of input(tokens, hidden) receives from `queryRows`
    /// under layer `index`'s input norm and query/key projections, causal, averaged over heads
    /// and query rows: what PyramidDrop and FastV rank image tokens by.
    func queryAttention(layer index: Int, input: Tensor, positions: Positions, queryRows: [Int]) -> [Float]
    /// Logits (rows.count, vocab) of hidden rows `rows` (final norm, then the output head).
    func logits(_ hidden: Tensor, rows: Range<Int>) -> Tensor
}

extension LanguageDecoder {
    public var layerCount: Int { shape.layers }
    public var vocabularySize: Int { shape.vocabulary }
}
