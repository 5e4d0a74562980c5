"""Writes Tests/Fixtures/qwen2-vl-images: what transformers' Qwen2-VL image processor (its PIL
backend, Qwen2VLImageProcessorPil, as AutoImageProcessor resolves it without torchvision) makes of
real photographs of several aspect ratios: `smart_resize` to multiples of 28 between min_pixels
and max_pixels, bicubic resize, rescale, normalise, and the (grid_t·grid_h·grid_w,
3·2·14·14) patch rows in merge order, with image_grid_thw.

pixel_values are stored as raw little-endian float32; index.json lists every case.
Run: python tools/reference/make_qwen2vl_image_fixtures.py   (from the package root)"""
import json
from pathlib import Path

import numpy as np
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

root = Path(__file__).resolve().parents[2]
out = root / "Tests" / "Fixtures" / "qwen2-vl-images"
out.mkdir(parents=True, exist_ok=True)
# A portrait crop of the cat photograph, so that height > width is covered too.
portrait = Image.open(root / "Tests/Fixtures/images/chelsea.jpg").convert("RGB").crop((150, 20, 270, 290))
portrait.save(out / "chelsea_portrait.png")
images = {
    "chelsea.jpg": root / "Tests/Fixtures/images/chelsea.jpg",               # 451 × 300, landscape
    "astronaut_400.jpg": root / "Tests/Fixtures/vision/images/astronaut_400.jpg",  # square
    "camera_gray.jpg": root / "Tests/Fixtures/vision/images/camera_gray.jpg",      # grey, square
    "chelsea_portrait.png": out / "chelsea_portrait.png",                     # 120 × 270, portrait
    "chelsea_444.jpg": root / "Tests/Fixtures/vision/images/chelsea_444.jpg",      # 72 × 48: below min_pixels' grid
}
configs = {
    # Qwen2-VL-7B-Instruct's preprocessor_config.json, with max_pixels cut so that fixtures stay small.
    "small": {"min_pixels": 3136, "max_pixels": 12544, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
              "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
              "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"},
    # The defaults (min 56·56, max 28·28·1280 through `size`), as save_pretrained writes them.
    "defaults": {"size": {"shortest_edge": 3136, "longest_edge": 1003520}},
    # A larger floor: small images are scaled up.
    "min-12544": {"size": {"shortest_edge": 12544, "longest_edge": 50176}},
}
cases = []
for config_name, config in configs.items():
    (out / "configs" / config_name).mkdir(parents=True, exist_ok=True)
    (out / "configs" / config_name / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    processor = Qwen2VLImageProcessorPil(**{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")})
    names = list(images) if config_name == "small" else ["chelsea_444.jpg"]
    for name in names:
        image = Image.open(images[name]).convert("RGB")
        result = processor(images=image, return_tensors="np")
        pixels = result["pixel_values"].astype("<f4")
        grid = result["image_grid_thw"][0].tolist()
        file = f"{config_name}-{Path(name).stem}.f32"
        pixels.tofile(out / file)
        cases.append({"config": f"configs/{config_name}/preprocessor_config.json", "image": name,
                      "image_path": str(images[name].relative_to(root / "Tests" / "Fixtures")), "width": image.width, "height": image.height,
                      "pixel_values": file, "shape": list(pixels.shape), "image_grid_thw": grid})
        print(config_name, name, image.size, "->", grid, pixels.shape)
(out / "index.json").write_text(json.dumps({"processor": "Qwen2VLImageProcessorPil", "cases": cases}, indent=1))
