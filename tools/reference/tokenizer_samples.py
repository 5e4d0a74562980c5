"""Strings a byte-level tokenizer is checked on (tools/smollm2, tools/qwen2): mixed scripts, emoji,
whitespace runs, code, digits, contractions, special tokens inside text, Unicode forms; each also
with a leading space, trailing spaces, doubled and upper-cased."""

SAMPLES = [
    "Hello, world!", "What is the capital of France?", "I'm sure they've said it's fine, didn't they?",
    "naïve café résumé coöperate", "Größe Straße ÄÖÜ", "Привет, как дела?", "日本語のテキストです。", "中文分词测试：你好世界",
    "한국어 문장입니다", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "Ελληνικά γράμματα", "emoji 😀🎉👍🏽 and 👨‍👩‍👧‍👦 family",
    "tabs\tand\nnewlines\r\n", "   leading and trailing   ", "many     spaces   between", "\n\n\nthree newlines",
    "def f(x):\n    return x ** 2  # square", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }", "<div class=\"a\">&amp;</div>",
    "SELECT * FROM t WHERE id = 42;", "x = [1, 2, 3]; y = {'k': 'v'}", "1234567890 3.14159 -2.5e10 1,000,000",
    "2026-12-03T23:59:59Z", "https://example.com/path?q=1&r=2#frag", "user@example.com", "C'est l'été, n'est-ce pas?",
    "<|im_start|>user\nhi<|im_end|>", "a<|endoftext|>b", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
    "combining e\u0301 and precomposed \u00e9", "ﬁ ligature and ｆｕｌｌｗｉｄｔｈ", "$$\\frac{a}{b}$$", "~!@#$%^&*()_+`-=[]\\{}|;':\",./<>?",
]

EXTRA_SAMPLES = [  # a second set, for tokenizers whose pattern treats digits, marks and newlines apart (Qwen2)
    "٣٤٥ Arabic-Indic digits and ½ ² Ⅻ", "Hangul jamo \u1100\u1161\u11a8 and 각", "Devanagari with marks: क्षत्रिय",
    "Thai ภาษาไทย no spaces", "tab\t\tpairs\t", "line\r\rcarriage", "trailing newline\n", " \n \n spaces around newlines \n",
    "YOU'RE WE'LL THEY'D I'M", "don't DON'T Don'T", "'s 't 're 've 'm 'll 'd", "''quoted'' `ticks`",
    "<|vision_start|><|image_pad|><|vision_end|>What is this?", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
    "fn main() {\n\tprintln!(\"{}\", 1 + 2);\n}\n", "    indented\n        twice\n", "a\u0300\u0301\u0302 stacked marks",
    "🏳️‍🌈 flag sequence 🇫🇷🇯🇵", "math ∑∫∂√∞ ≤ ≥ ≠", "currency €£¥₹₿ 100", "…—–“”‘’ typographic",
]


def variants(samples):
    result = []
    for text in samples:
        result += [text, " " + text, text + "  ", text + " " + text, text.upper()]
    return result
