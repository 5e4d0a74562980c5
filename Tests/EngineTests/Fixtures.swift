import Foundation
import TestSupport
import Tokenizer

extension Fixtures {
    /// The llava-1.5 tokenizer of Tests/Fixtures/tiny-llava (the real LLaMA vocabulary with
    /// byte fallback), loaded once for all tests.
    static let llamaTokenizer: Result<Tokenizer, Error> = Result {
        try Tokenizer(tokenizerJSON: Fixtures.url("tiny-llava/tokenizer.json"))
    }
}

/// The Unicode scalars of a text, so that comparisons are exact rather than up to canonical
/// equivalence (String's `==`).
func scalars(_ text: String) -> [Unicode.Scalar] {
    Array(text.unicodeScalars)
}
