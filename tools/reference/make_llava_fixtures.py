"""LLaVA-1.5 end to end on the tiny checkpoints: a real photograph through CLIPImageProcessor,
the prompt through LlavaProcessor, the vision tower, the projector and the decoder.

Writes to Tests/Fixtures:
  images/chelsea.jpg                 scikit-image's "chelsea" photograph (451x300), JPEG
  tiny-llava/preprocessor_config.json  as llava-hf ships it (CLIPImageProcessor, 336)
  tiny-llava/reference-image.safetensors
  tiny-llava-saved/processor_config.json  as transformers 5's save_pretrained writes it
  tiny-llava-saved/reference-image.safetensors  (without pixel_values: tiny-llava's are the same)

Each reference-image file holds pixel_values (3, 336, 336), the vision tower's hidden states
(vision.hidden.K, K = 0 embeddings … L), the selected features, the projected image features,
input_ids with <image> expanded, the decoder's per-layer outputs, last-position logits and 16
greedy tokens. Run after make_fixtures.py (it reloads the checkpoints written there).
"""
import os

import numpy as np
import torch
from PIL import Image
from skimage import data as skimage_data
from transformers import (AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration,
                          LlavaProcessor)
import tokenizers

from common import FIXTURES, fixture_dir, record_decoder, save_reference, write_json

PROMPT = "USER: <image>\nWhat is shown in this image? ASSISTANT:"
HUB_PREPROCESSOR = {
    "crop_size": {"height": 336, "width": 336},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "processor_class": "LlavaProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 336},
}


def write_image():
    path = os.path.join(fixture_dir("images"), "chelsea.jpg")
    Image.fromarray(skimage_data.chelsea()).save(path, quality=90)
    return path


def record_image_prompt(directory, image_path, processor, store_pixels=True):
    model = LlavaForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
    image = Image.open(image_path).convert("RGB")
    inputs = processor(images=image, text=PROMPT, return_tensors="pt")
    input_ids, pixel_values = inputs["input_ids"], inputs["pixel_values"]

    # The processor's ids must be what the tokenizers library gives for tokenizer.json.
    fast = tokenizers.Tokenizer.from_file(os.path.join(FIXTURES, "tiny-llava", "tokenizer.json"))
    expanded = PROMPT.replace("<image>", "<image>" * 576)
    assert fast.encode(expanded).ids == input_ids[0].tolist(), "processor and tokenizers disagree"

    # The saved layout shares tiny-llava's pixel values (same image, same processor).
    tensors = {"pixel_values": pixel_values[0]} if store_pixels else {}
    with torch.no_grad():
        vision = model.model.vision_tower(pixel_values, output_hidden_states=True)
        for index, state in enumerate(vision.hidden_states):
            tensors[f"vision.hidden.{index}"] = state[0]
        tensors["image_features.selected"] = vision.hidden_states[-2][0, 1:]
        projected = model.model.get_image_features(pixel_values=pixel_values, vision_feature_layer=-2,
                                                   vision_feature_select_strategy="default")
        projected = projected.pooler_output if hasattr(projected, "pooler_output") else projected
        projected = projected[0] if isinstance(projected, (list, tuple)) else projected
        tensors["image_features.projected"] = projected.reshape(-1, projected.shape[-1])
    tensors.update(record_decoder(model, model.model.language_model, input_ids, 16, store_full_logits=False,
                                  pixel_values=pixel_values))
    save_reference(os.path.join(directory, "reference-image.safetensors"), tensors,
                   {"source": "transformers LlavaForConditionalGeneration + LlavaProcessor", "prompt": PROMPT,
                    "image": os.path.basename(image_path)})
    print(os.path.basename(directory), "image tokens:", int((input_ids == 32000).sum()), "prompt:", input_ids.shape[1],
          "greedy:", tensors["greedy_tokens"].tolist())


def main():
    image_path = write_image()
    hub = fixture_dir("tiny-llava")
    write_json(os.path.join(hub, "preprocessor_config.json"), HUB_PREPROCESSOR)
    tokenizer = AutoTokenizer.from_pretrained(hub)
    image_processor = CLIPImageProcessor(**{k: v for k, v in HUB_PREPROCESSOR.items()
                                            if k not in ("image_processor_type", "processor_class")})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    record_image_prompt(hub, image_path, processor)

    saved = fixture_dir("tiny-llava-saved")
    processor.save_pretrained(saved)
    # The saved layout's test needs no tokenizer copy: it shares tiny-llava's vocabulary.
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "chat_template.json"):
        path = os.path.join(saved, name)
        if os.path.exists(path) and name != "chat_template.jinja":
            os.remove(path)
    record_image_prompt(saved, image_path, processor, store_pixels=False)


if __name__ == "__main__":
    main()
