"""How much of a task-model checkpoint's image tokens depends on the image (transformers).

For a few held-out digits of tools/task-model/single_digit_check.py's data: the projector's
output (the image tokens at the language model's input), split into what is common to all
images and positions, what depends on the position only, and what depends on the image; the
image-dependent share again after an RMSNorm (what every decoder layer reads first); and the
image tokens' norm against the text tokens' at the input.

    python tools/task-model/feature_collapse.py --model DIR --data .build/single-digit-check/data
"""
import argparse
import json
import os

import torch
from PIL import Image
from transformers import AutoImageProcessor, LlavaForConditionalGeneration


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    model = LlavaForConditionalGeneration.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    questions = [json.loads(line) for line in open(os.path.join(args.data, "questions.jsonl"))][:6]
    features = []
    for question in questions:
        image = Image.open(os.path.join(args.data, "images", question["image"]))
        pixel_values = processor(images=image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            output = model.get_image_features(pixel_values=pixel_values)
        output = output.pooler_output if hasattr(output, "pooler_output") else output
        output = output[0] if isinstance(output, (list, tuple)) else output
        features.append(output.reshape(-1, output.shape[-1]))
    features = torch.stack(features)  # (images, tokens, hidden)
    by_position = features.mean(0)  # (tokens, hidden): what does not depend on the image
    image_part = features - by_position
    position_part = by_position - features.mean(dim=(0, 1))
    energy = features.pow(2).sum()
    normed = features / features.pow(2).mean(-1, keepdim=True).sqrt()
    text_norm = model.get_input_embeddings().weight.norm(dim=-1).mean()
    print(json.dumps({
        "image_dependent_share": (image_part.pow(2).sum() / energy).item(),
        "position_dependent_share": (position_part.pow(2).sum() * features.shape[0] / energy).item(),
        "image_dependent_share_after_rmsnorm": ((normed - normed.mean(0)).pow(2).sum() / normed.pow(2).sum()).item(),
        "image_token_norm_over_text_token_norm": (features.norm(dim=-1).mean() / text_norm).item(),
    }, indent=1))


if __name__ == "__main__":
    main()
