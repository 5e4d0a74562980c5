#!/usr/bin/env python3
"""Writes the golden fixtures for the Swift `Tokenizer` tests.

Reference: the Hugging Face `tokenizers` library (the Rust core behind transformers' fast
tokenizers). Everything the Swift tests compare against comes from it, except the llama.cpp
reference encodings, which are copied as they are and checked only where `tokenizers` agrees.

Inputs
  --vocab-dir   folder with llama.cpp's ggml-vocab-llama-spm.gguf and its .inp/.out reference
                encodings (default: ../shared/data/llama-spm-vocab beside the repository)
Outputs (under Tests/TokenizerTests/Fixtures unless --out is given)
  llama-tokenizer.json      the llava-1.5-7b-hf style tokenizer.json (LLaMA vocabulary, legacy
                            Prepend/Replace normalizer, `<image>` 32000 and `<pad>` 32001 added)
  tokenizer_config.json     llava-hf style config, so the Swift side can read bos/eos names
  golden.json               strings, expected ids and decodes, stage variants, llama.cpp agreement
  llama.cpp/ggml-vocab-llama-spm.gguf.inp/.out   llama.cpp's reference encodings, copied

Run it with a Python that has transformers (with gguf support), tokenizers, gguf, sentencepiece:
  python tools/reference/make_tokenizer_fixtures.py
The output is deterministic: a fixed string list plus combinations drawn from a seeded RNG.
"""

import argparse
import copy
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import tokenizers
import transformers
from tokenizers import Tokenizer

GGUF_NAME = "ggml-vocab-llama-spm.gguf"
LLAMA_CPP_MARKER = "\n__ggml_vocab_test__\n"
RANDOM_SEED = 20240611
RANDOM_CASES = 190

LEGACY_LLAMA_NORMALIZER = {
    "type": "Sequence",
    "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    ],
}
LEGACY_LLAMA_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ],
}
LLAVA_ADDED_TOKENS = [
    {"id": 32000, "content": "<image>", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": False, "special": True},
    {"id": 32001, "content": "<pad>", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": False, "special": True},
]


def convert_gguf(vocab_dir: Path) -> dict:
    """The tokenizer.json transformers writes for the GGUF vocabulary, untouched."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        shutil.copy(vocab_dir / GGUF_NAME, scratch_path / GGUF_NAME)
        converted = AutoTokenizer.from_pretrained(str(scratch_path), gguf_file=GGUF_NAME)
        converted.save_pretrained(str(scratch_path / "saved"))
        return json.loads((scratch_path / "saved" / "tokenizer.json").read_text(encoding="utf-8"))


def llava_style(converted: dict) -> dict:
    """Reshapes the conversion into the legacy layout llava-hf/llava-1.5-7b-hf ships."""
    tokenizer = copy.deepcopy(converted)
    tokenizer["normalizer"] = LEGACY_LLAMA_NORMALIZER
    tokenizer["pre_tokenizer"] = None
    tokenizer["decoder"] = LEGACY_LLAMA_DECODER
    model = tokenizer["model"]
    model["unk_token"] = "<unk>"
    # llava-hf's file stores merges as "a b" strings (the older serialisation); the Swift side
    # reads both forms, and the gguf-conversion variant below covers the [a, b] form.
    model["merges"] = [merge if isinstance(merge, str) else f"{merge[0]} {merge[1]}"
                       for merge in model["merges"]]
    present = {token["content"] for token in tokenizer["added_tokens"]}
    tokenizer["added_tokens"] += [t for t in LLAVA_ADDED_TOKENS if t["content"] not in present]
    return tokenizer


def apply_patch(base: dict, patch: dict) -> dict:
    """Same patch semantics as the Swift test helper: top-level keys replace, `model` keys
    merge, `appendAddedTokens` extends the added-token list, `mergesAsPairs` rewrites merges."""
    tokenizer = copy.deepcopy(base)
    for key, value in patch.items():
        if key == "model":
            tokenizer["model"].update(value)
        elif key == "appendAddedTokens":
            tokenizer["added_tokens"] += value
        elif key == "mergesAsPairs":
            if value:
                tokenizer["model"]["merges"] = [merge.split(" ") for merge in tokenizer["model"]["merges"]]
        else:
            tokenizer[key] = value
    return tokenizer


def variant_patches(converted: dict) -> list:
    metaspace = lambda scheme, split: {"type": "Metaspace", "replacement": "\u2581",
                                      "prepend_scheme": scheme, "split": split}
    return [
        {
            "name": "gguf-conversion",
            "why": "exactly the stages transformers writes when converting the GGUF vocabulary",
            "patch": {
                "normalizer": converted["normalizer"],
                "pre_tokenizer": converted["pre_tokenizer"],
                "decoder": converted["decoder"],
                "post_processor": converted["post_processor"],
                "model": {"unk_token": converted["model"]["unk_token"]},
                "mergesAsPairs": isinstance(converted["model"]["merges"][0], list),
            },
        },
        {
            "name": "metaspace-always-split",
            "why": "Metaspace pre-tokenizer and decoder, prepend always, split on the replacement",
            "patch": {"normalizer": None, "pre_tokenizer": metaspace("always", True),
                      "decoder": metaspace("always", True)},
        },
        {
            "name": "metaspace-never",
            "why": "Metaspace without a prepended replacement",
            "patch": {"normalizer": None, "pre_tokenizer": metaspace("never", False),
                      "decoder": metaspace("never", False)},
        },
        {
            "name": "byte-level",
            "why": "GPT-2 ByteLevel pre-tokenizer (regex + byte map), decoded through ByteFallback + ByteLevel",
            "patch": {"normalizer": None,
                      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                        "trim_offsets": True, "use_regex": True},
                      "decoder": {"type": "Sequence", "decoders": [
                          {"type": "ByteFallback"},
                          {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                           "use_regex": True}]}},
        },
        {
            "name": "byte-level-prefix-space",
            "why": "ByteLevel with add_prefix_space",
            "patch": {"normalizer": None,
                      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                        "trim_offsets": True, "use_regex": True},
                      "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                  "use_regex": True}},
        },
        {
            "name": "split-regex-metaspace",
            "why": "Sequence[Split(regex, Isolated), Metaspace first]: per-piece prepend only at offset 0",
            "patch": {"normalizer": None,
                      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                          {"type": "Split",
                           "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
                           "behavior": "Isolated", "invert": False},
                          metaspace("first", False)]},
                      "decoder": metaspace("first", False)},
        },
        {
            "name": "split-behaviours",
            "why": "Split with string and regex patterns: Removed, MergedWithPrevious, MergedWithNext, Contiguous, invert",
            "patch": {"normalizer": None,
                      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                          {"type": "Split", "pattern": {"String": "\n"}, "behavior": "Removed", "invert": False},
                          {"type": "Split", "pattern": {"Regex": "[0-9]"}, "behavior": "MergedWithPrevious",
                           "invert": False},
                          {"type": "Split", "pattern": {"String": ","}, "behavior": "MergedWithNext", "invert": False},
                          {"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Contiguous", "invert": True},
                          metaspace("always", False)]},
                      "decoder": metaspace("always", False)},
        },
        {
            "name": "nfkc-lowercase",
            "why": "Unicode NFKC + Lowercase ahead of the legacy Prepend/Replace normalizer",
            "patch": {"normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFKC"}, {"type": "Lowercase"}] + LEGACY_LLAMA_NORMALIZER["normalizers"]}},
        },
        {
            "name": "added-token-flags",
            "why": "added tokens with lstrip/rstrip/single_word/normalized, special and not",
            "patch": {"appendAddedTokens": [
                {"id": 32002, "content": "<im_patch>", "single_word": False, "lstrip": True, "rstrip": True,
                 "normalized": False, "special": False},
                {"id": 32003, "content": "world", "single_word": True, "lstrip": False, "rstrip": False,
                 "normalized": True, "special": False},
                {"id": 32004, "content": "<im_end>", "single_word": False, "lstrip": False, "rstrip": True,
                 "normalized": False, "special": True},
                {"id": 32005, "content": "ASSIST", "single_word": False, "lstrip": True, "rstrip": False,
                 "normalized": False, "special": False},
                {"id": 32006, "content": "<image><image>", "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": False, "special": True},
                {"id": 32007, "content": "<Spec>", "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": True, "special": True},
            ]},
        },
    ]


def fixed_strings() -> list:
    long_paragraph = (
        "The LLaVA model connects a vision encoder with a large language model. "
        "It was trained on 158K unique language-image instruction-following samples, "
        "including 58K conversations, 23K detailed descriptions and 77K complex reasoning questions. "
        "Numbers like 3.14159, 2,718,281 and 1e-9 appear; so do URLs such as https://llava-vl.github.io/ "
        "and e-mail addresses like someone@example.com.\n\n"
        "Multilingual text: Grüße aus München! Ça va très bien. ¿Dónde está la biblioteca? "
        "Привет, как дела? 你好，世界！こんにちは。안녕하세요. مرحبا. שלום. नमस्ते.\n"
        "Emoji: 🚀🔥👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 and symbols ∑∫√∞ ≠ ≤ ≥ → ← ↑ ↓ © ® ™ € £ ¥.\n"
        "Code: `for i in range(10): print(i ** 2)`\n\tTabs\tand   multiple   spaces   too.   "
    )
    prompt_4k = (("USER: <image>\nPlease describe the scene in detail, including colours, "
                  "objects, people and any text you can read. ASSISTANT: The image shows ") * 40)[:4000]
    return [
        # empty, whitespace only
        "", " ", "  ", "   ", "    ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\n\t", "\u00a0", "\u3000",
        "\u2028", "\u200b", "\ufeff", " \t \n", "a\x0bb", "a\x85b", "a\x0c b",
        # single characters
        "a", "A", "z", "0", "9", "!", "?", ".", ",", "'", "\"", "-", "_", "~", "`", "@", "#", "$", "%",
        "^", "&", "*", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\", "|", "=", "+", ";", ":",
        "é", "ß", "ñ", "ø", "Ω", "λ", "Ж", "я", "א", "ع", "中", "あ", "ア", "한", "€", "£", "∞",
        "\u2581", "\u2581\u2581hello", "\u2581 x", "\x00", "\x01", "\x07", "\x7f", "\x1b[0m",
        # spaces around words
        "Hello world", " Hello world", "Hello world ", "Hello  world", "Hello   world   ",
        "   leading spaces", "trailing spaces   ", "  both  ", "a b c d e f g", "a  b   c    d",
        "Hello\nworld", "Hello\n\nworld", "Hello\r\nworld", "line1\nline2\nline3\n", "\nstarts with newline",
        "a\tb", "\t\tindented with tabs", "tab\tat\tevery\tword", "mixed \t\n whitespace",
        # digits and numbers
        "3", "33", "333", "3333", "12345", "1234567890123456789012345678901234567890", "2024-01-15",
        "3.14159", "$1,234.56", "1e-10", "0x7fffffff", "-42", "+1 (555) 010-9999", "100%", "1/2 + 3/4",
        "٠١٢٣٤٥٦٧٨٩", "１２３", "Ⅻ ⅷ", "½ ¼ ¾", "²³",
        # emoji, ZWJ sequences, flags, modifiers, variation selectors
        "🚀", "😀😃😄", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "👍🏿 ok", "🇺🇸🇯🇵", "✅", "❤️", "1️⃣", "🦙 llama",
        "emoji in the middle 🤖 of text", "😶‍🌫️", "🧑🏽‍💻",
        # characters outside the vocabulary (byte fallback)
        "𠀀", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\ue000", "\U000f0000", "\U0010fffd", "ꙮ", "𓂀", "ᚠᛇᚻ", "🀄",
        # CJK
        "我想在apple工作1314151天～", "日本語のテキストです。", "한국어 텍스트", "中文，标点。", "漢字かなカナ",
        # accents and combining marks (composed and decomposed forms must stay distinct)
        "café", "cafe\u0301", "naïve résumé", "Ångström", "e\u0301\u0302", "a\u0308\u0301",
        "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312\u036bg\u030c\u0317\u031a",
        "\u03af \u1f77", "\u03ac\u1f71\u03ad\u1f73", "Cửa Việt", "Ｆｕｌｌｗｉｄｔｈ", "ﬁ ﬂ ﬀ", "Ⓐⓑⓒ",
        # scripts
        "مرحبا بالعالم", "שלום עולם", "Привет, мир!", "нещо на Български", "नमस्ते दुनिया",
        "สวัสดีชาวโลก", "Γειά σου Κόσμε", "Բարեւ", "ქართული", "ញុំ",
        # code
        "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "<div class=\"x\">&amp;</div>", "SELECT * FROM t WHERE a = 'b';", "{\"key\": [1, 2, 3]}",
        "    indented", "x = y ** 2 // 3", "#include <stdio.h>", "print('hello')  # comment",
        "fn main() { println!(\"{}\", 1); }", "a->b && c || !d", "/* comment */", "https://example.com/a?b=c&d=e",
        # <image> and the llava prompt shape
        "USER: <image>\nWhat is in the image? ASSISTANT:", "<image>", "<image><image>", "<image> <image>",
        "<image>x", "x<image>", " <image> ", "<image>\n", "\n<image>", "<image>USER:", "<image> ",
        " <image>", "<ima ge>", "<image", "image>", "<IMAGE>", "<<image>>", "<pad>", "<pad><pad>text",
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the human's questions. USER: <image>\nDescribe this "
        "image. ASSISTANT:",
        "[INST] <image>\nWhat is shown in this image? [/INST]",
        # special tokens written in the text
        "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hello</s>", " </s> ", "<s><s>", "</s>\n<s>",
        "<0x0A>", "<0xZZ>", "<s", "s>",
        # added-token-flags variant material
        "world", "hello world", "helloworld", "hello, world!", "world_wide", " <im_patch> ", "a<im_patch>b",
        "x  <im_patch>\n\ny", "<im_end>   after", "ASSIST", "  ASSISTANT:", "<image><image><image>",
        "<Spec>", "a <Spec> b", "a<Spec>", "<spec>",
        # longer text
        long_paragraph, prompt_4k,
    ]


def random_strings(fragments: list) -> list:
    rng = random.Random(RANDOM_SEED)
    separators = [" ", "", "\n", "  ", "\t", " <image> ", "<image>", "</s>", ", ", "\n\n"]
    words = ["the", "image", "shows", "a", "cat", "on", "mat", "USER:", "ASSISTANT:", "What", "is",
             "42", "3.5", "naïve", "😀", "中文", "Привет", "café", "x", "don't", "it's", "I'll", "'re",
             "!!", "...", "--", "\u2581", "ί", "𝔘", "👨‍👩‍👧", "<s>", "<pad>", "1️⃣"]
    short_fragments = [f for f in fragments if 0 < len(f) < 60]
    out = []
    for _ in range(RANDOM_CASES):
        parts = []
        for _ in range(rng.randint(1, 6)):
            pool = words if rng.random() < 0.6 else short_fragments
            parts.append(rng.choice(pool))
            parts.append(rng.choice(separators))
        if rng.random() < 0.5:
            parts.pop()
        text = "".join(parts)
        if rng.random() < 0.15:
            text = " " + text
        out.append(text)
    return out


def read_llama_cpp_cases(vocab_dir: Path):
    raw_inputs = (vocab_dir / f"{GGUF_NAME}.inp").read_text(encoding="utf-8")
    raw_outputs = (vocab_dir / f"{GGUF_NAME}.out").read_text(encoding="utf-8")
    # llama.cpp writes every case followed by the marker, so the last split piece is empty.
    texts = raw_inputs.split(LLAMA_CPP_MARKER)
    if texts and texts[-1] == "":
        texts.pop()
    lines = raw_outputs.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(texts) != len(lines):
        sys.exit(f"llama.cpp fixtures disagree: {len(texts)} inputs, {len(lines)} output lines")
    return [(text, [int(x) for x in line.split()]) for text, line in zip(texts, lines)]


def encode_all(tokenizer: Tokenizer, texts: list, full: bool) -> list:
    cases = []
    for text in texts:
        with_special = tokenizer.encode(text, add_special_tokens=True).ids
        decoded = tokenizer.decode(with_special, skip_special_tokens=False)
        if full:
            cases.append({"text": text, "ids": with_special,
                          "idsNoSpecial": tokenizer.encode(text, add_special_tokens=False).ids,
                          "decoded": decoded,
                          "decodedSkipSpecial": tokenizer.decode(with_special, skip_special_tokens=True)})
        else:
            # Variant cases line up with `cases` by index; the text is not repeated.
            cases.append({"ids": with_special, "decoded": decoded,
                          "decodedSkipSpecial": tokenizer.decode(with_special, skip_special_tokens=True)})
    return cases


def dump_readable(value, depth: int = 0) -> str:
    """JSON with one case per line: indented down to the case lists, compact inside a case,
    so diffs of regenerated fixtures stay readable and the file stays small."""
    pad = " " * (depth + 1)
    compact = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, dict) and depth < 3 and "ids" not in value:
        items = [f"{pad}{compact(k)}: {dump_readable(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(value, list) and depth < 3 and value and isinstance(value[0], dict):
        items = [f"{pad}{dump_readable(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"
    return compact(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-dir", type=Path,
                        default=Path(__file__).resolve().parents[3] / "shared" / "data" / "llama-spm-vocab")
    fixtures = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures"
    parser.add_argument("--out", type=Path, default=fixtures / "tokenizer",
                        help="folder for golden.json and llama.cpp's reference files")
    parser.add_argument("--model-dir", type=Path, default=fixtures / "tiny-llava",
                        help="checkpoint folder that receives tokenizer.json and tokenizer_config.json")
    args = parser.parse_args()
    out: Path = args.out
    model_dir: Path = args.model_dir
    (out / "llama.cpp").mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)

    converted = convert_gguf(args.vocab_dir)
    llava = llava_style(converted)
    (model_dir / "tokenizer.json").write_text(
        json.dumps(llava, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tokenizer_config = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "legacy": False, "padding_side": "left",
        "processor_class": "LlavaProcessor", "tokenizer_class": "LlamaTokenizer",
        "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"}
                                 for t in llava["added_tokens"]},
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    for suffix in (".inp", ".out"):
        shutil.copyfile(args.vocab_dir / f"{GGUF_NAME}{suffix}", out / "llama.cpp" / f"{GGUF_NAME}{suffix}")

    llama_cpp_cases = read_llama_cpp_cases(args.vocab_dir)
    base_strings = fixed_strings()
    texts = base_strings + random_strings(base_strings) + [text for text, _ in llama_cpp_cases]
    # Keep the first occurrence of each string, in order, so case indices are stable.
    seen = set()
    texts = [t for t in texts if not (t in seen or seen.add(t))]

    reference = Tokenizer.from_str(json.dumps(llava))
    golden = {
        "generator": "tools/reference/make_tokenizer_fixtures.py",
        "tokenizersVersion": tokenizers.__version__,
        "transformersVersion": transformers.__version__,
        "tokenizerFile": "../tiny-llava/tokenizer.json",
        "cases": encode_all(reference, texts, full=True),
        "variants": [],
    }
    for variant in variant_patches(converted):
        patched = Tokenizer.from_str(json.dumps(apply_patch(llava, variant["patch"])))
        golden["variants"].append({**variant, "cases": encode_all(patched, texts, full=False)})

    conversion = Tokenizer.from_str(json.dumps(apply_patch(llava, golden["variants"][0]["patch"])))
    agreeing, conversion_agreeing, disagreeing = [], [], []
    for index, (text, expected) in enumerate(llama_cpp_cases):
        ours = reference.encode(text, add_special_tokens=False).ids
        if ours == expected:
            agreeing.append(index)
        else:
            disagreeing.append({"index": index, "text": text, "llamaCpp": expected, "tokenizers": ours})
        if conversion.encode(text, add_special_tokens=False).ids == expected:
            conversion_agreeing.append(index)
    golden["llamaCpp"] = {
        "inputFile": f"llama.cpp/{GGUF_NAME}.inp",
        "outputFile": f"llama.cpp/{GGUF_NAME}.out",
        "caseCount": len(llama_cpp_cases),
        "agreeingIndices": agreeing,
        "ggufConversionAgreeingIndices": conversion_agreeing,
        "disagreeing": disagreeing,
    }
    (out / "golden.json").write_text(dump_readable(golden) + "\n", encoding="utf-8")

    print(f"{len(texts)} strings, {len(golden['variants'])} variants; llama.cpp: "
          f"{len(agreeing)}/{len(llama_cpp_cases)} agree with the llava-style tokenizer.json, "
          f"{len(conversion_agreeing)}/{len(llama_cpp_cases)} with the raw GGUF conversion")
    for case in disagreeing:
        print(f"  llama.cpp case {case['index']} {case['text']!r}: llama.cpp {case['llamaCpp']} "
              f"tokenizers {case['tokenizers']}")


if __name__ == "__main__":
    main()
