"""A random LLaMA checkpoint of TinyLlama-1.1B's shape, written twice with the same values: as a
Hugging Face directory (config.json + bf16 model.safetensors, what `pdrop` reads) and as a bf16
GGUF (what llama.cpp reads), the GGUF laid out as llama.cpp's convert_hf_to_gguf.py lays out a
LlamaForCausalLM (its tensor names, q/k rows permuted for its rotary layout) and carrying the
LLaMA SentencePiece vocabulary of ../shared/data/llama-spm-vocab (32,000 tokens).

Usage: make_random_llama.py OUTPUT_DIR [--gguf-py PATH]  (gguf-py: llama.cpp's own, vendored in its source)
"""
import argparse
import json
import os
import sys

import numpy as np

SHAPE = dict(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632, vocab=32000, context=2048,
             rms_eps=1e-5, rope_theta=10000.0)
VOCAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "llama-spm-vocab",
                     "ggml-vocab-llama-spm.gguf")


def bf16_bits(values):
    """fp32 → bf16 bits, round to nearest even (as PyTorch)."""
    bits = values.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def random_tensors(rng):
    """name → bf16 bits, uniform in ±1/sqrt(in_features) for matrices (as pdrop's random weights), norms near 1."""
    s = SHAPE
    head_dim = s["hidden"] // s["heads"]
    shapes = {"model.embed_tokens.weight": (s["vocab"], s["hidden"]), "model.norm.weight": (s["hidden"],),
              "lm_head.weight": (s["vocab"], s["hidden"])}
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (s["hidden"],), p + "post_attention_layernorm.weight": (s["hidden"],),
            p + "self_attn.q_proj.weight": (s["heads"] * head_dim, s["hidden"]),
            p + "self_attn.k_proj.weight": (s["kv_heads"] * head_dim, s["hidden"]),
            p + "self_attn.v_proj.weight": (s["kv_heads"] * head_dim, s["hidden"]),
            p + "self_attn.o_proj.weight": (s["hidden"], s["heads"] * head_dim),
            p + "mlp.gate_proj.weight": (s["intermediate"], s["hidden"]),
            p + "mlp.up_proj.weight": (s["intermediate"], s["hidden"]),
            p + "mlp.down_proj.weight": (s["hidden"], s["intermediate"]),
        })
    tensors = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            values = 1 + 0.1 * rng.uniform(-1, 1, shape)
        else:
            values = rng.uniform(-1, 1, shape) / np.sqrt(shape[1])
        tensors[name] = bf16_bits(values.astype(np.float32))
    return tensors


def write_hf(directory, tensors):
    from safetensors.numpy import save_file
    import struct
    s = SHAPE
    # safetensors' numpy API has no bf16: write the header by hand, the data as the bf16 bits.
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = tensors[name].tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s["hidden"],
              "intermediate_size": s["intermediate"], "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
              "num_key_value_heads": s["kv_heads"], "vocab_size": s["vocab"], "max_position_embeddings": s["context"],
              "rms_norm_eps": s["rms_eps"], "rope_theta": s["rope_theta"], "hidden_act": "silu", "tie_word_embeddings": False,
              "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def permute(weights, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF's rotary halves → llama.cpp's interleaved pairs."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_gguf(path, tensors):
    import gguf
    s = SHAPE
    vocab = gguf.GGUFReader(VOCAB)

    def field(name):
        f = vocab.fields[name]
        return [f.parts[i] for i in f.data]

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("random TinyLlama-1.1B shape (pdrop tools/llamacpp)")
    writer.add_context_length(s["context"])
    writer.add_embedding_length(s["hidden"])
    writer.add_block_count(s["layers"])
    writer.add_feed_forward_length(s["intermediate"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_layer_norm_rms_eps(s["rms_eps"])
    writer.add_rope_freq_base(s["rope_theta"])
    writer.add_rope_dimension_count(s["hidden"] // s["heads"])
    writer.add_vocab_size(s["vocab"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([bytes(t) for t in field("tokenizer.ggml.tokens")])
    writer.add_token_scores([float(x[0]) for x in field("tokenizer.ggml.scores")])
    writer.add_token_types([int(x[0]) for x in field("tokenizer.ggml.token_type")])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(s["layers"]):
        for hf, ours in per_layer.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{ours}.weight"
    for name, bits in tensors.items():
        if name.endswith("q_proj.weight"):
            bits = permute(bits, s["heads"])
        elif name.endswith("k_proj.weight"):
            bits = permute(bits, s["kv_heads"])
        if bits.ndim == 1:  # norms: F32, as convert_hf_to_gguf keeps them
            values = (bits.astype(np.uint32) << 16).view(np.float32)
            writer.add_tensor(names[name], values)
        else:
            writer.add_tensor(names[name], bits, raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--gguf-py", help="llama.cpp's gguf-py folder (default: the gguf package installed)")
    args = parser.parse_args()
    if args.gguf_py:
        sys.path.insert(0, args.gguf_py)
    os.makedirs(args.output, exist_ok=True)
    tensors = random_tensors(np.random.default_rng(0))
    write_hf(args.output, tensors)
    write_gguf(os.path.join(args.output, "model-bf16.gguf"), tensors)
    print(f"wrote {args.output}: model.safetensors + config.json, model-bf16.gguf")


if __name__ == "__main__":
    main()
