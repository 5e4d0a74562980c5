#!/usr/bin/env python3
"""Writes the committed fuzz seed corpora (Tests/Fuzz/corpus/<target>/) and the tiny tokenizer the
conversation target uses (Tests/Fuzz/tiny-tokenizer.json): cut-down valid fixtures plus malformed
cases. Deterministic; standard library only. Run from the repository root."""
import json, os, shutil, struct, zlib

ROOT = "Tests/Fuzz"
CORPUS = os.path.join(ROOT, "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- tiny tokenizer: tiny-llava's (LLaMA SentencePiece BPE) cut to bytes, ASCII and a few merges ---
def tiny_tokenizer():
    full = json.load(open("Tests/Fixtures/tiny-llava/tokenizer.json"))
    vocab = full["model"]["vocab"]
    kept = [t for t, i in sorted(vocab.items(), key=lambda p: p[1]) if i < 259 or (259 <= i < 330)]
    kept += [t for t, i in sorted(vocab.items(), key=lambda p: p[1]) if len(t) == 1 and t not in kept and (t.isascii() or t == "\u2581")]
    ids = {t: n for n, t in enumerate(kept)}
    merges = []
    for m in full["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in ids and b in ids and a + b in ids:
            merges.append(f"{a} {b}")
    image, pad = len(ids), len(ids) + 1
    tok = dict(full)
    tok["model"] = dict(full["model"], vocab=ids, merges=merges)
    added = []
    for entry in full["added_tokens"]:
        entry = dict(entry)
        if entry["content"] == "<image>":
            entry["id"] = image
        elif entry["content"] == "<pad>":
            entry["id"] = pad
        added.append(entry)
    tok["added_tokens"] = added
    return tok


def tokenizer_corpus(tok):
    text = dumps(tok)
    with open(os.path.join(ROOT, "tiny-tokenizer.json"), "w") as f:
        f.write(text)
    # The fuzz target reads tokenizer.json, then (after a NUL byte) tokenizer_config.json.
    small = dict(tok, model=dict(tok["model"], vocab={t: i for t, i in tok["model"]["vocab"].items() if i < 300},
                                 merges=[m for m in tok["model"]["merges"]
                                         if all(p in tok["model"]["vocab"] and tok["model"]["vocab"][p] < 300
                                                for p in m.split(" ") + [m.replace(" ", "")])]))
    put("tokenizer", "llama-bpe.json", dumps(small))
    config = dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "add_bos_token": True})
    put("tokenizer", "llama-bpe-with-config.json", dumps(small) + "\0" + config)
    vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "Ġ": 4, "Ġa": 5, "c": 6}
    byte_level = {
        "version": "1.0", "added_tokens": [{"id": 7, "content": "<|endoftext|>", "special": True, "single_word": False,
                                             "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [["a", "b"], ["Ġ", "a"]]},
    }
    put("tokenizer", "byte-level-split.json", dumps(byte_level))
    catastrophic = json.loads(dumps(byte_level))
    catastrophic["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a+)+$"
    put("tokenizer", "catastrophic-regex.json", dumps(catastrophic))
    bad_regex = json.loads(dumps(byte_level))
    bad_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(?<=a+)[\\p{Nope}"
    put("tokenizer", "invalid-regex.json", dumps(bad_regex))
    replace = json.loads(dumps(byte_level))
    replace["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True}]}
    replace["decoder"] = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"Regex": "Ġ"}, "content": " "}, {"type": "Fuse"}]}
    put("tokenizer", "regex-normalizer-decoder.json", dumps(replace))
    put("tokenizer", "truncated.json", dumps(small)[:700])
    put("tokenizer", "invalid-utf8.json", b'{"model":{"type":"BPE","vocab":{"\xff\xfe":0},"merges":[]}}')
    merge_unknown = json.loads(dumps(byte_level))
    merge_unknown["model"]["merges"] = [["a", "zz"], "b c d"]
    put("tokenizer", "merge-of-unknown-tokens.json", dumps(merge_unknown))
    put("tokenizer", "deep-nesting.json", "[" * 5000 + "]" * 5000)
    put("tokenizer", "not-an-object.json", "[1,2,3]")


# --- safetensors ---
def safetensors(tensors, metadata=None, header=None, tail=b""):
    body = b""
    table = {}
    for name, dtype, shape, data in tensors:
        table[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    if metadata is not None:
        table["__metadata__"] = metadata
    text = header if header is not None else dumps(table).encode()
    return struct.pack("<Q", len(text)) + text + body + tail


def safetensors_corpus():
    f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
    put("safetensors", "valid-mixed.safetensors", safetensors([
        ("a.weight", "F32", [2, 2], f32(1, 2, 3, 4)), ("b", "BF16", [3], b"\x80\x3f" * 3), ("c", "F16", [1], b"\x00\x3c"),
        ("d", "I64", [2], struct.pack("<2q", 7, -1)), ("e", "BOOL", [2], b"\x01\x00"), ("f", "F64", [], struct.pack("<d", 0.5)),
        ("g", "U8", [0], b"")], metadata={"format": "pt"}))
    put("safetensors", "valid-empty.safetensors", safetensors([]))
    good = safetensors([("x", "F32", [2], f32(1, 2))])
    put("safetensors", "truncated.safetensors", good[:-3])
    put("safetensors", "short.safetensors", b"\x10\x00\x00")
    put("safetensors", "header-too-long.safetensors", struct.pack("<Q", 1 << 62) + b"{}")
    gap = safetensors([], header=dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                         "y": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}).encode(), tail=b"\0" * 12)
    put("safetensors", "gap-between-tensors.safetensors", gap)
    overlap = safetensors([], header=dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                             "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}).encode(), tail=b"\0" * 8)
    put("safetensors", "overlapping.safetensors", overlap)
    put("safetensors", "wrong-shape.safetensors", safetensors([], header=dumps(
        {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode(), tail=b"\0" * 8))
    put("safetensors", "huge-shape.safetensors", safetensors([], header=dumps(
        {"x": {"dtype": "F64", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}}).encode()))
    put("safetensors", "negative-offsets.safetensors", safetensors([], header=dumps(
        {"x": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}).encode(), tail=b"\0"))
    put("safetensors", "unknown-dtype.safetensors", safetensors([], header=dumps(
        {"x": {"dtype": "F8_E9M9", "shape": [1], "data_offsets": [0, 1]}}).encode(), tail=b"\0"))
    put("safetensors", "invalid-utf8-header.safetensors", safetensors([], header=b'{"\xc3\x28":{}}'))
    put("safetensors", "trailing-bytes.safetensors", good + b"\0\0\0\0")
    put("safetensors", "metadata-not-strings.safetensors", safetensors([], metadata={"step": 3}))


# --- config.json ---
def config_corpus():
    llava = json.load(open("Tests/Fixtures/tiny-llava/config.json"))
    put("config", "llava.json", dumps(llava))
    llama = json.load(open("Tests/Fixtures/tiny-llama/config.json"))
    put("config", "llama.json", dumps(llama))
    put("config", "llava-next.json", dumps(json.load(open("Tests/Fixtures/tiny-llava-next/config.json"))))
    bad = json.loads(dumps(llava)); bad["text_config"]["num_attention_heads"] = 0
    put("config", "zero-heads.json", dumps(bad))
    bad = json.loads(dumps(llava)); bad["text_config"]["hidden_size"] = 2 ** 62
    put("config", "huge-hidden.json", dumps(bad))
    bad = json.loads(dumps(llava)); bad["vision_feature_layer"] = -1000
    put("config", "feature-layer-out-of-range.json", dumps(bad))
    bad = json.loads(dumps(llama)); bad["rope_scaling"] = {"type": "linear", "factor": -1}
    put("config", "bad-rope-scaling.json", dumps(bad))
    bad = json.loads(dumps(llama)); bad["model_type"] = "gpt2"; bad["architectures"] = ["GPT2LMHeadModel"]
    put("config", "unknown-family.json", dumps(bad))
    put("config", "truncated.json", dumps(llava)[:300])
    put("config", "invalid-utf8.json", b'{"model_type":"ll\xffava"}')
    put("config", "not-an-object.json", "3")


# --- preprocessor / processor configs ---
def preprocessor_corpus():
    clip = json.load(open("Tests/Fixtures/tiny-llava/preprocessor_config.json"))
    put("preprocessor", "clip.json", dumps(clip))
    put("preprocessor", "llava-next.json", dumps(json.load(open("Tests/Fixtures/tiny-llava-next/preprocessor_config.json"))))
    put("preprocessor", "processor-nested.json", dumps({"image_processor": clip, "patch_size": 14}))
    bad = dict(clip, size={"height": 0, "width": -3}); put("preprocessor", "zero-size.json", dumps(bad))
    bad = dict(clip, image_mean=[0.5], image_std=[0, 0, 0]); put("preprocessor", "bad-mean-std.json", dumps(bad))
    bad = dict(clip, resample=99, crop_size=2 ** 62); put("preprocessor", "bad-resample-crop.json", dumps(bad))
    bad = dict(clip, image_grid_pinpoints=[[336, 0], [1e300, 2]]); put("preprocessor", "bad-pinpoints.json", dumps(bad))
    put("preprocessor", "truncated.json", dumps(clip)[:120])
    put("preprocessor", "invalid-utf8.json", b'{"size":{"shortest_edge":\xff}}')


# --- images ---
def png(width, height, color_type, bit_depth, rows, extra=b"", crc_ok=True):
    def chunk(kind, data, ok=True):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc if ok else crc ^ 1)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(raw), crc_ok) + chunk(b"IEND", b""))


def image_corpus():
    rgb = png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))])
    put("png", "rgb-3x2.png", rgb)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    put("png", "palette-trns.png", png(2, 2, 3, 8, [b"\0\1", b"\1\0"], extra=chunk(b"PLTE", b"\xff\0\0\0\xff\0") + chunk(b"tRNS", b"\0")))
    put("png", "gray16-key.png", png(2, 1, 0, 16, [b"\x12\x34\xff\xff"], extra=chunk(b"tRNS", b"\xff\xff")))
    put("png", "rgba.png", png(1, 2, 6, 8, [b"\1\2\3\4", b"\5\6\7\0"]))
    put("png", "gray-alpha-exif.png", png(1, 1, 4, 8, [b"\x80\x40"], extra=chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\1\x01\x12\0\3\0\0\0\1\0\6\0\0\0\0\0\0")))
    put("png", "bad-crc.png", png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))], crc_ok=False))
    put("png", "truncated.png", rgb[:len(rgb) - 20])
    put("png", "huge-dimensions.png", png(0x7FFFFFFF, 0x7FFFFFFF, 2, 8, [b"\0\0\0"]))
    put("png", "zero-width.png", png(0, 1, 2, 8, [b""]))
    put("png", "short-idat.png", png(4, 4, 2, 8, [b"\1\2\3"]))
    # JPEG: hand-made baseline images (tiny: the fuzzer's speed depends on it) plus a real header.
    for name, data in tiny_jpegs().items():
        put("jpeg", name, data)
    jpg = open("Tests/Fixtures/training/images/coffee.jpg", "rb").read()
    header = jpg[:700]
    put("jpeg", "coffee-header-only.jpg", header)
    sof = header.find(b"\xff\xc0")
    huge = bytearray(header); huge[sof + 5:sof + 9] = b"\xff\xff\xff\xff"
    put("jpeg", "huge-dimensions.jpg", bytes(huge))
    put("jpeg", "soi-only.jpg", b"\xff\xd8\xff")


def tiny_jpegs():
    """Baseline JPEGs of constant 8x8 blocks: unit quantisation, a 2-symbol DC table (categories 0
    and 3) and a 1-symbol AC table (end of block), so each block is a DC difference and an EOB."""
    def segment(marker, payload):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload
    def image(width, height, components, blocks, app=b"", restart=0):
        dqt = segment(0xDB, b"\x00" + b"\x01" * 64)
        sof = segment(0xC0, struct.pack(">BHHB", 8, height, width, len(components))
                      + b"".join(bytes([i + 1, sampling, 0]) for i, sampling in enumerate(components)))
        dc = segment(0xC4, b"\x00" + bytes([0, 2] + [0] * 14) + b"\x00\x03")
        ac = segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
        dri = segment(0xDD, struct.pack(">H", restart)) if restart else b""
        sos = segment(0xDA, bytes([len(components)]) + b"".join(bytes([i + 1, 0x00]) for i in range(len(components))) + b"\x00\x3f\x00")
        bits = "".join("01" + "100" + "0" if first else "00" + "0" for first in blocks)
        bits += "1" * (-len(bits) % 8)
        scan = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)).replace(b"\xff", b"\xff\x00")
        return b"\xff\xd8" + app + dqt + sof + dc + ac + dri + sos + scan + b"\xff\xd9"
    exif = b"Exif\0\0MM\0*\0\0\0\x08\0\1\x01\x12\0\3\0\0\0\1\0\x06\0\0\0\0\0\0"
    gray = image(16, 8, [0x11], [True, False])
    color = image(16, 16, [0x22, 0x11, 0x11], [True, False, False, False, False, False])
    return {
        "gray-16x8.jpg": gray,
        "color-420-16x16.jpg": color,
        "exif-orientation-6.jpg": image(16, 8, [0x11], [True, False], app=segment(0xE1, exif)),
        "truncated-scan.jpg": gray[:-6],
        "no-huffman-tables.jpg": gray.replace(gray[gray.find(b"\xff\xc4"):gray.find(b"\xff\xda")], b""),
        "zero-width.jpg": image(0, 8, [0x11], [True]),
    }


# --- conversation data ---
def conversation_corpus():
    data = json.load(open("Tests/Fixtures/training/data.json"))
    put("conversation", "fixture.json", dumps(data))
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]
    put("conversation", "one-record.json", dumps([{"id": "a", "image": "cat.png", "conversations": turns}]))
    put("conversation", "no-image.json", dumps([{"id": 1, "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]))
    put("conversation", "bad-records.json", dumps([
        {"id": None, "conversations": []}, {"conversations": [{"from": "gpt", "value": "first"}]},
        {"id": "x", "image": "../../etc/passwd", "conversations": turns}, {"id": "y", "image": "/abs.png", "conversations": turns},
        {"id": "z", "conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": 3}]},
        {"id": [1, {"a": 2}], "conversations": "nope"}, 7, None, "text"]))
    put("conversation", "long-answer.json", dumps([{"id": "l", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "ab " * 400}]}]))
    put("conversation", "not-an-array.json", dumps({"id": "a"}))
    put("conversation", "truncated.json", dumps(data)[:200])
    put("conversation", "invalid-utf8.json", b'[{"id":"\xff","conversations":[]}]')


# --- trainer state ---
def trainer_state_corpus():
    f32 = lambda n: struct.pack(f"<{n}f", *([0.25] * n))
    meta = {"step": "1", "epoch": "0", "sample": "2", "optimizer_step": "1", "settings": "{}"}
    moments = []
    for prefix in ["exp_avg.", "exp_avg_sq."]:
        moments += [(prefix + "w", "F32", [2, 3], f32(6)), (prefix + "b", "F32", [3], f32(3)), (prefix + "s", "F32", [], f32(1))]
    put("trainer-state", "valid.safetensors", safetensors(moments, metadata=meta))
    put("trainer-state", "other-step.safetensors", safetensors(moments, metadata=dict(meta, step="2", optimizer_step="2")))
    put("trainer-state", "negative-counter.safetensors", safetensors(moments, metadata=dict(meta, epoch="-4")))
    put("trainer-state", "missing-moment.safetensors", safetensors(moments[1:], metadata=meta))
    wrong = [(n, d, [3, 2] if s == [2, 3] else s, b) for n, d, s, b in moments]
    put("trainer-state", "wrong-shape.safetensors", safetensors(wrong, metadata=meta))
    as_int = [(n, "I32", s, b) for n, d, s, b in moments]
    put("trainer-state", "integer-moments.safetensors", safetensors(as_int, metadata=meta))
    put("trainer-state", "no-metadata.safetensors", safetensors(moments))
    put("trainer-state", "truncated.safetensors", safetensors(moments, metadata=meta)[:-10])


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    tokenizer_corpus(tiny_tokenizer())
    safetensors_corpus()
    config_corpus()
    preprocessor_corpus()
    image_corpus()
    conversation_corpus()
    trainer_state_corpus()
