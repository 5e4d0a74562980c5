import Foundation
import Tokenizer

/// Text of generated tokens as it becomes final: never splits a UTF-8 character (byte-fallback
/// tokens such as <0xE2><0x82><0xAC> give "€" only when complete) and never emits text a later
/// token would change. The chunks of `append` followed by `finish()` add up, scalar for scalar,
/// to `tokenizer.decode(tokens, skipSpecialTokens:)`.
///
/// The method of Hugging Face's `DecodeStream` and vLLM's `detokenize_incrementally`: decode a
/// window of tokens already emitted (the prefix) alone and with the new tokens after it, and emit
/// the difference. Decoding the window with them, rather than the new tokens alone, keeps
/// context-dependent text right: LLaMA's decoder strips the leading space of the first token it
/// sees, and the window's first token absorbs that strip in both decodes.
///
/// Two things hold text back:
/// - a decode ending in U+FFFD: an incomplete byte sequence that a later token may complete;
/// - a newest token that is a byte-fallback token (`<0xNN>`): `tokenizers` decodes a run of them
///   as a whole and turns every byte of an invalid run into U+FFFD, so one more byte token can
///   change an already complete "€" into four U+FFFD. The run's text waits for the token after it.
public struct IncrementalDetokenizer {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    /// Every token appended so far.
    public private(set) var tokens: [Int] = []
    /// tokens[prefixStart..<readStart] is the window already emitted whose decode `prefixText` is.
    private var prefixStart = 0
    /// Where the tokens whose text is not emitted yet begin.
    private var readStart = 0
    private var prefixText = ""
    /// Whether the newest token that reaches the decoder (not skipped) is a byte-fallback token.
    private var byteRunOpen = false

    /// `skipSpecialTokens` must match the `decode` the streamed text should equal.
    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one generated token and returns the text that became final with it, possibly "".
    public mutating func append(_ token: Int) -> String {
        tokens.append(token)
        if let spelling = tokenizer.token(forID: token), !(skipSpecialTokens && tokenizer.isSpecialToken(token)) {
            byteRunOpen = Self.isByteFallbackSpelling(spelling)
        }
        guard !byteRunOpen else { return "" }
        return takeNewText(endingInReplacementAllowed: false)
    }

    /// The text held back so far (an unfinished byte run decodes to U+FFFD, as in `decode`);
    /// afterwards everything appended is emitted.
    public mutating func finish() -> String {
        takeNewText(endingInReplacementAllowed: true)
    }

    /// The text of tokens[readStart...] in the context of the window, advancing the window when
    /// there is any; "" when nothing new is final.
    private mutating func takeNewText(endingInReplacementAllowed: Bool) -> String {
        let text = tokenizer.decode(Array(tokens[prefixStart...]), skipSpecialTokens: skipSpecialTokens)
        let prefixLength = prefixText.utf8.count
        // Bytes, not Characters: a new combining mark changes the last Character of the prefix
        // but not its bytes, and String.hasPrefix compares Characters.
        guard text.utf8.count > prefixLength, text.utf8.starts(with: prefixText.utf8),
              endingInReplacementAllowed || text.unicodeScalars.last != "\u{FFFD}" else { return "" }
        let newText = String(decoding: text.utf8.dropFirst(prefixLength), as: UTF8.self)
        prefixStart = readStart
        readStart = tokens.count
        prefixText = tokenizer.decode(Array(tokens[prefixStart..<readStart]), skipSpecialTokens: skipSpecialTokens)
        return newText
    }

    /// Whether a token string looks like `<0xNN>`. Looser than the ByteFallback decoder's test
    /// on purpose: taking another token for a byte token only delays its text by one token.
    private static func isByteFallbackSpelling(_ spelling: String) -> Bool {
        let bytes = Array(spelling.utf8)
        return bytes.count == 6 && bytes.starts(with: Array("<0x".utf8)) && bytes[5] == UInt8(ascii: ">")
    }
}
