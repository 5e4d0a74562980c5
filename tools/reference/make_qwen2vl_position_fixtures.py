"""Writes Tests/Fixtures/qwen2-vl-positions.json: transformers' Qwen2-VL `get_rope_index` (3-D
rotary positions and rope_deltas) for token sequences with images of several grids, text between,
before and after them, and adjacent vision blocks.

Run: python tools/reference/make_qwen2vl_position_fixtures.py   (from the package root)"""
import json
from pathlib import Path

import torch
from transformers import Qwen2VLConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

IMAGE = 7
config = Qwen2VLConfig(
    text_config={"vocab_size": 16, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0}},
    vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2, "spatial_merge_size": 2},
    image_token_id=IMAGE)
model = Qwen2VLModel(config).eval()
cases = []
# (tokens as "t" text / "i" image runs, grids): text, image, text; two images; image first; a 1-frame 2×2 grid.
for layout, grids in [
    ([("t", 5), ("i", 12), ("t", 4)], [[1, 6, 8]]),
    ([("t", 3), ("i", 6), ("t", 2), ("i", 20), ("t", 6)], [[1, 4, 6], [1, 10, 8]]),
    ([("i", 4), ("t", 3)], [[1, 4, 4]]),
    ([("t", 2), ("i", 1), ("t", 1), ("i", 15), ("t", 1)], [[1, 2, 2], [1, 6, 10]]),
]:
    ids = []
    for kind, count in layout:
        ids += [IMAGE if kind == "i" else 3] * count
    input_ids = torch.tensor([ids])
    types = (input_ids == IMAGE).int()
    positions, deltas = model.get_rope_index(input_ids, types, image_grid_thw=torch.tensor(grids))
    cases.append({"is_image": [i == IMAGE for i in ids], "grids": grids, "merge_size": 2,
                  "positions": positions[:, 0].tolist(), "rope_delta": int(deltas[0, 0])})
out = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "qwen2-vl-positions.json"
out.write_text(json.dumps({"source": "transformers Qwen2VLModel.get_rope_index", "cases": cases}))
print("wrote", out, [c["rope_delta"] for c in cases])
