import Foundation
import Tokenizer

/// The llava-1.5 tokenizer of Tests/Fixtures/tiny-llava (the real LLaMA vocabulary with
/// byte fallback), loaded once for all tests.
enum Fixtures {
    static let llamaTokenizer: Result<Tokenizer, Error> = Result {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tiny-llava/tokenizer.json")
        return try Tokenizer(tokenizerJSON: url)
    }
}

/// The Unicode scalars of a text, so that comparisons are exact rather than up to canonical
/// equivalence (String's `==`).
func scalars(_ text: String) -> [Unicode.Scalar] {
    Array(text.unicodeScalars)
}
