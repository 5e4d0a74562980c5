"""Writes Tests/Fixtures/mrope.json: transformers' Qwen2-VL rotary embedding (Qwen2VLRotaryEmbedding,
whose cos and sin are recomposed by mrope_section, then apply_rotary_pos_emb) applied to random queries and keys at 3-D
positions, for the engine's multimodal RoPE.

Run: python tools/reference/make_mrope_fixtures.py   (from the package root)"""
import json
from pathlib import Path

import torch
from transformers import Qwen2VLTextConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding, apply_rotary_pos_emb

torch.manual_seed(0)
head_dim, heads, tokens, sections, theta = 16, 2, 7, [2, 3, 3], 1000000.0
config = Qwen2VLTextConfig(hidden_size=head_dim * heads, num_attention_heads=heads, num_key_value_heads=heads,
                           rope_parameters={"rope_type": "default", "mrope_section": sections, "rope_theta": theta})
rotary = Qwen2VLRotaryEmbedding(config)
positions = torch.tensor([[0, 1, 2, 2, 2, 2, 5], [0, 1, 2, 2, 3, 3, 5], [0, 1, 2, 3, 2, 3, 5]])  # (3, tokens): text, a 2×2 image, text
query = torch.randn(1, heads, tokens, head_dim)
key = torch.randn(1, heads, tokens, head_dim)
cos, sin = rotary(query, positions[:, None, :])
rotated_query, rotated_key = apply_rotary_pos_emb(query, key, cos, sin)  # cos, sin already recomposed by section
out = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "mrope.json"
out.write_text(json.dumps({
    "head_dim": head_dim, "heads": heads, "tokens": tokens, "sections": sections, "theta": theta, "positions": positions.tolist(),
    # (tokens, heads, head_dim), as the engine lays queries out
    "query": query[0].transpose(0, 1).flatten().tolist(), "rotated_query": rotated_query[0].transpose(0, 1).flatten().tolist(),
    "key": key[0].transpose(0, 1).flatten().tolist(), "rotated_key": rotated_key[0].transpose(0, 1).flatten().tolist()}))
print("wrote", out)
