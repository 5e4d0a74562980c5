"""Writes Tests/Fixtures/tiny-qwen2-vl: a tiny random Qwen2VLForConditionalGeneration as transformers 5's
save_pretrained writes it (model.visual.*, model.language_model.*), and reference.safetensors with what
transformers' vision tower computes for two photographs of different grids (the processor's
pixel_values, one image after the other): every block's output (patches in merge order) and the
merger's output (one row per language-model token).

Run: python tools/reference/make_qwen2vl_fixtures.py   (from the package root)"""
import json
import os
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from common import fixture_dir, randomize

torch.manual_seed(0)
root = Path(__file__).resolve().parents[2]
config = Qwen2VLConfig(
    text_config={"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "max_position_embeddings": 1024,
                 "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0}},
    vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 4, "mlp_ratio": 2, "spatial_merge_size": 2,
                   "patch_size": 14, "temporal_patch_size": 2, "in_channels": 3},
    image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503, tie_word_embeddings=True)
model = Qwen2VLForConditionalGeneration(config).eval()
randomize(model, seed=11, std=0.1)
out = fixture_dir("tiny-qwen2-vl")
model.save_pretrained(out)
model = Qwen2VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()

processor = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12544)
images = [Image.open(root / "Tests/Fixtures/images/chelsea.jpg").convert("RGB"),
          Image.open(root / "Tests/Fixtures/qwen2-vl-images/chelsea_portrait.png").convert("RGB")]
batch = processor(images=images, return_tensors="pt")
pixel_values, grids = batch["pixel_values"], batch["image_grid_thw"]
(Path(out) / "preprocessor_config.json").write_text(json.dumps(
    {"min_pixels": 3136, "max_pixels": 12544, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
     "image_processor_type": "Qwen2VLImageProcessor"}, indent=2))
blocks = []
hooks = [block.register_forward_hook(lambda module, args, output: blocks.append(output.detach().clone()))
         for block in model.model.visual.blocks]
with torch.no_grad():
    merged = model.model.visual(pixel_values, grid_thw=grids).pooler_output
for hook in hooks:
    hook.remove()
reference = {"image_grid_thw": grids.to(torch.int64), "vision.merged": merged.contiguous()}
reference.update({f"vision.block.{i}": tensor.contiguous() for i, tensor in enumerate(blocks)})
save_file(reference, os.path.join(out, "reference.safetensors"), metadata={"source": "transformers Qwen2VLForConditionalGeneration vision tower",
                                                                             "images": "Tests/Fixtures/images/chelsea.jpg,Tests/Fixtures/qwen2-vl-images/chelsea_portrait.png"})
print("tiny-qwen2-vl:", grids.tolist(), tuple(merged.shape), sorted(k for k in model.state_dict() if "visual" in k)[:4])
