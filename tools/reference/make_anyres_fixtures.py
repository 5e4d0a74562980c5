"""Records transformers' LLaVA-NeXT anyres preprocessing (PIL backend) for the Swift tests.

Run: python tools/reference/make_anyres_fixtures.py (see tools/reference/README.md). Writes Tests/Fixtures/anyres/:
  <name>.png                     the input image (lossless, so decoding is not in question)
  <name>-<config>.f32            pixel_values, float32 little-endian, shape (patches, 3, crop, crop)
  <config>.json                  the preprocessor_config.json used
  index.json                     one entry per case: image, config, shape, image_sizes, best resolution,
                                 and the number of <image> tokens LlavaNextProcessor expands to;
                                 token_counts: [height, width, tokens] for many more sizes (no pixels)
"""

import json
import pathlib

import numpy as np
import PIL.Image
import skimage.data
import transformers
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "anyres"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def llava_config(crop, pinpoints):
    """llava-hf/llava-v1.6-vicuna-7b-hf's preprocessor_config.json with the given crop and pinpoints."""
    return {
        "aspect_ratio_setting": "anyres",
        "crop_size": {"height": crop, "width": crop},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_grid_pinpoints": pinpoints,
        "image_mean": CLIP_MEAN,
        "image_processor_type": "LlavaNextImageProcessor",
        "image_std": CLIP_STD,
        "processor_class": "LlavaNextProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": crop},
    }


REAL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
CONFIGS = {
    "llava-v1.6-336": llava_config(336, REAL_PINPOINTS),
    # The same grid scaled by 1/6, so that most fixtures stay small.
    "scaled-56": llava_config(56, [[h // 6, w // 6] for h, w in REAL_PINPOINTS]),
}


def images():
    """name -> RGB uint8 array (height, width, 3)."""
    chelsea = skimage.data.chelsea()  # (300, 451, 3): wide
    astronaut = skimage.data.astronaut()  # (512, 512, 3): square
    rocket_tall = np.ascontiguousarray(np.rot90(skimage.data.rocket()))  # (640, 427, 3)
    coffee = skimage.data.coffee()  # (400, 600, 3)
    return {
        "chelsea-451x300": chelsea,
        "astronaut-512x512": astronaut,
        "rocket-tall-200x500": rocket_tall[70:570, 110:310],
        "coffee-small-80x60": coffee[150:210, 250:330],
        "coffee-tiny-30x40": coffee[100:140, 300:330],
        "astronaut-strip-400x64": astronaut[200:264, 50:450],
    }


CASES = [
    ("chelsea-451x300", "llava-v1.6-336"),
    ("chelsea-451x300", "scaled-56"),
    ("astronaut-512x512", "scaled-56"),
    ("rocket-tall-200x500", "scaled-56"),
    ("coffee-small-80x60", "scaled-56"),
    ("coffee-tiny-30x40", "scaled-56"),
    ("astronaut-strip-400x64", "scaled-56"),
]


def token_count(image_processor, image_inputs):
    """What LlavaNextProcessor's replace_image_token expands one <image> to, with llava-hf's
    processor_config (patch_size 14, vision_feature_select_strategy "default", num_additional_image_tokens 1).
    The tokenizer plays no part in the count, so the processor is assembled without one."""
    processor = LlavaNextProcessor.__new__(LlavaNextProcessor)
    processor.image_processor = image_processor
    processor.patch_size = 14
    processor.num_additional_image_tokens = 1
    processor.vision_feature_select_strategy = "default"
    processor.image_token = "<image>"
    return processor.replace_image_token(image_inputs, image_idx=0).count("<image>")


def main():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for path in OUTPUT.iterdir():
        path.unlink()
    for name, config in CONFIGS.items():
        (OUTPUT / f"{name}.json").write_text(json.dumps(config, indent=2) + "\n")
    pictures = images()
    for name, pixels in pictures.items():
        PIL.Image.fromarray(pixels, "RGB").save(OUTPUT / f"{name}.png")

    index = {"transformers": transformers.__version__, "pillow": PIL.__version__, "cases": []}
    for image_name, config_name in CASES:
        config = CONFIGS[config_name]
        processor = LlavaNextImageProcessorPil(**{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class", "aspect_ratio_setting")})
        image = PIL.Image.open(OUTPUT / f"{image_name}.png").convert("RGB")
        outputs = processor(images=image, return_tensors="np")
        pixel_values = outputs["pixel_values"][0].astype("<f4")  # (patches, 3, crop, crop)
        image_sizes = [int(v) for v in outputs["image_sizes"][0]]
        best = select_best_resolution(image_sizes, config["image_grid_pinpoints"])
        data_file = f"{image_name}-{config_name}.f32"
        (OUTPUT / data_file).write_bytes(pixel_values.tobytes())
        index["cases"].append({
            "image": f"{image_name}.png",
            "config": f"{config_name}.json",
            "pixel_values": data_file,
            "shape": list(pixel_values.shape),
            "image_sizes": image_sizes,
            "best_resolution": [int(best[0]), int(best[1])],
            "image_tokens": token_count(processor, outputs),
        })
        print(image_name, config_name, pixel_values.shape, best, index["cases"][-1]["image_tokens"])
    # Token counts for sizes around the pinpoints' aspect ratios and extremes, from image_sizes alone.
    index["token_counts"] = {}
    sizes = sorted({(h, w) for h in (1, 7, 14, 60, 200, 300, 333, 336, 337, 451, 500, 672, 673, 1000, 1008, 2000, 5000)
                    for w in (1, 13, 80, 300, 336, 449, 451, 640, 672, 999, 1008, 1500, 4000)})
    for config_name, config in CONFIGS.items():
        processor = LlavaNextImageProcessorPil(**{k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class", "aspect_ratio_setting")})
        crop = config["crop_size"]["height"]
        counts = []
        for height, width in sizes:
            inputs = {"image_sizes": [[height, width]], "pixel_values": [np.zeros((1, 3, crop, crop), dtype=np.float32)]}
            counts.append([height, width, token_count(processor, inputs)])
        index["token_counts"][f"{config_name}.json"] = counts
    (OUTPUT / "index.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
