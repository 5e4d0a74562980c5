"""Checks `pdrop data vocabulary` against the `tokenizers` library: the pruned tokenizer.json
loads, and every conversation of the data sets encodes to the same tokens as with the full
tokenizer, renumbered; text outside the data still round-trips (through byte fallback).

Usage: check_task_tokenizer.py FULL_TOKENIZER_DIR PRUNED_TOKENIZER_DIR DATA_DIR [DATA_DIR ...]
"""
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer
from transformers import AutoTokenizer

full_dir, pruned_dir, *data_dirs = sys.argv[1:]
full = Tokenizer.from_file(str(Path(full_dir) / "tokenizer.json"))
pruned = Tokenizer.from_file(str(Path(pruned_dir) / "tokenizer.json"))
renumber = {}
for token, new_id in pruned.get_vocab(with_added_tokens=True).items():
    old_id = full.token_to_id(token)
    assert old_id is not None, f"pruned token {token!r} is not in the full vocabulary"
    renumber[old_id] = new_id

texts = set()
for directory in data_dirs:
    for record in json.loads((Path(directory) / "train.json").read_text()):
        turns = record["conversations"]
        text = ""
        for turn in turns:
            text += ("USER: " + turn["value"] + " ") if turn["from"] == "human" else ("ASSISTANT: " + turn["value"] + "</s>")
        texts.add(text)
        texts.update("USER: " + turn["value"] + " ASSISTANT:" for turn in turns if turn["from"] == "human")
mismatches = 0
for text in sorted(texts):
    expected = [renumber.get(i) for i in full.encode(text).ids]
    found = pruned.encode(text).ids
    if expected != found:
        mismatches += 1
        if mismatches <= 5:
            print("mismatch:", repr(text), expected, found)
print(f"{len(texts)} texts, {mismatches} encode differently; vocabulary {pruned.get_vocab_size()} of {full.get_vocab_size()}")

# Outside the data: byte fallback keeps every text encodable and decodable. (A text that starts
# with spaces can decode differently: the full vocabulary's "▁▁" keeps one of them through
# LLaMA's strip-one-leading-space decoder, a lone "▁" does not.)
hf = AutoTokenizer.from_pretrained(pruned_dir)
hf_full = AutoTokenizer.from_pretrained(full_dir)
for text in ["What is the capital of France?", "Zürich — 東京 🙂", "two  spaces\tand a tab"]:
    decoded = hf.decode(hf(text).input_ids, skip_special_tokens=True)
    assert decoded == hf_full.decode(hf_full(text).input_ids, skip_special_tokens=True), (text, decoded)
print("outside texts decode as with the full tokenizer, in transformers:", type(hf).__name__)
sys.exit(1 if mismatches else 0)
