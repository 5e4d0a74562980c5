import Foundation

/// The answer normalisation of VQA's EvalAI server, as LLaVA's `llava/eval/m4c_evaluator.py`
/// (`EvalAIAnswerProcessor`, from MMF) implements it, quirks included.
enum EvalAIAnswerProcessor {
    static let punctuation: [String] = [";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
    static let numberWords = ["none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                              "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"]
    static let articles: Set<String> = ["a", "an", "the"]
    static let contractions: [String: String] = [
        "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
        "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
        "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
        "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
        "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
        "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
        "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
        "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
        "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
        "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
        "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
        "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
        "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
        "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
        "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
        "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
        "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
        "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
        "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
        "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
        "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
        "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
        "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
        "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
        "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
    ]
    /// `(?<=\d)(\,)+(?=\d)`: a comma between digits.
    private static let commaBetweenDigits = try! NSRegularExpression(pattern: "(?<=\\d)(,)+(?=\\d)")
    /// m4c's `(?!<=\d)(\.)(?!\d)`: the first group is a look-ahead (not a look-behind), so every
    /// period not followed by a digit goes ("end." -> "end", "1.5" stays).
    private static let periodNotBeforeDigit = try! NSRegularExpression(pattern: "(?!<=\\d)(\\.)(?!\\d)")
    /// m4c passes `re.UNICODE` (32) as `re.sub`'s count: at most 32 periods are removed.
    private static let maximumPeriodsRemoved = 32

    /// `word_tokenize`, newlines and tabs to spaces, `process_punctuation`, `process_digit_article`.
    static func normalize(_ answer: String) -> String {
        var text = answer.lowercased()
            .replacingOccurrences(of: ",", with: "").replacingOccurrences(of: "?", with: "")
            .replacingOccurrences(of: "'s", with: " 's")
            .trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\t", with: " ")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        text = processPunctuation(text)
        return processDigitsAndArticles(text)
    }

    /// A punctuation mark next to a space (or any mark, when a comma sits between digits) is
    /// removed; one inside a word becomes a space. Then periods not before a digit go.
    static func processPunctuation(_ input: String) -> String {
        var output = input
        let hasCommaBetweenDigits = commaBetweenDigits.firstMatch(in: input, range: NSRange(input.startIndex..., in: input)) != nil
        for mark in punctuation {
            let touchesSpace = input.contains(mark + " ") || input.contains(" " + mark)
            output = output.replacingOccurrences(of: mark, with: touchesSpace || hasCommaBetweenDigits ? "" : " ")
        }
        let matches = periodNotBeforeDigit.matches(in: output, range: NSRange(output.startIndex..., in: output)).prefix(maximumPeriodsRemoved)
        for match in matches.reversed() { output = (output as NSString).replacingCharacters(in: match.range, with: "") }
        return output
    }

    /// Lower-cased words; number words to digits; articles dropped; contractions restored.
    static func processDigitsAndArticles(_ input: String) -> String {
        input.lowercased().split(whereSeparator: { $0.isWhitespace }).map(String.init)
            .map { numberWords[$0] ?? $0 }
            .filter { !articles.contains($0) }
            .map { contractions[$0] ?? $0 }
            .joined(separator: " ")
    }

    /// VQA accuracy of `prediction`: for each of the n human answers left out in turn,
    /// min(1, matches among the other n-1 / 3); the mean over the n (all normalised first).
    static func vqaAccuracy(prediction: String, humanAnswers: [String]) -> Double {
        guard !humanAnswers.isEmpty else { return 0 }
        let predicted = normalize(prediction)
        let answers = humanAnswers.map(normalize)
        let matchesOverall = answers.filter { $0 == predicted }.count
        let total = answers.reduce(0.0) { sum, leftOut in
            let matches = matchesOverall - (leftOut == predicted ? 1 : 0)
            return sum + min(1, Double(matches) / 3)
        }
        return total / Double(answers.count)
    }
}
