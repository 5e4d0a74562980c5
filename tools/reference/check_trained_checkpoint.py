"""Loads a checkpoint written by `pdrop train` in transformers and compares its logits with the engine's.

    python tools/reference/check_trained_checkpoint.py DIR [--logits-json FILE] [--image FILE] [--tolerance T]

DIR holds model.safetensors (fp32, llava-hf hub layout), config.json, tokenizer.json and
preprocessor_config.json. The prompt "USER: <image>\\nWhat is shown in this image? ASSISTANT:" with
Tests/Fixtures/images/chelsea.jpg goes through the checkpoint's CLIPImageProcessor and tokenizer
(<image> expanded to the image-token count) into LlavaForConditionalGeneration.from_pretrained(DIR)
in fp32; the script prints the last position's argmax.

With --logits-json (the JSON that `pdrop logits --model DIR --image ... --prompt ...` prints, keys
`inputIds` and `lastLogits`) it also prints the max abs difference of the input ids and of the last
logits, and exits 1 if either exceeds the tolerance (1e-4; any id difference fails).
"""
import argparse
import json
import os
import sys

import numpy as np
import tokenizers
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import training_reference as tr  # noqa: E402

PROMPT = "USER: <image>\nWhat is shown in this image? ASSISTANT:"
DEFAULT_IMAGE = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures", "images", "chelsea.jpg"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--logits-json", help="output of `pdrop logits` for the same prompt and image")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    model = tr.load_model(args.directory)
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(args.directory, "tokenizer.json"))
    image_processor = tr.image_processor_from(args.directory)
    image_inputs = tr.pixel_values_of(args.image, image_processor)
    if tr.is_anyres(image_processor):
        # LLaVA-NeXT: the block's length is LlavaNextProcessor's count for this image.
        from make_next_training_fixtures import make_processor, token_counter
        n = token_counter(make_processor(args.directory, model.config))(args.image)
        model_inputs = tr.stack_image_inputs([image_inputs])
    else:
        n = tr.tokens_per_image(model)
        model_inputs = {"pixel_values": image_inputs[None]}
    input_ids = torch.tensor([tokenizer.encode(args.prompt.replace(tr.IMAGE_TOKEN, tr.IMAGE_TOKEN * n)).ids])
    with torch.no_grad():
        logits = model(input_ids=input_ids, use_cache=False, **model_inputs).logits[0, -1]
    print(f"{args.directory}: {input_ids.shape[1]} prompt tokens ({n} image tokens), "
          f"last-position argmax {int(logits.argmax())} (logit {logits.max().item():.6f})")

    if not args.logits_json:
        return 0
    with open(args.logits_json) as f:
        engine = json.load(f)
    ok = True
    engine_ids = engine["inputIds"]
    if len(engine_ids) != input_ids.shape[1]:
        print(f"input ids: engine has {len(engine_ids)}, transformers {input_ids.shape[1]}: FAIL")
        ok = False
    else:
        d_ids = int(np.abs(np.array(engine_ids) - input_ids[0].numpy()).max())
        print(f"input ids max abs difference: {d_ids}")
        ok &= d_ids == 0
    engine_logits = torch.tensor(engine["lastLogits"], dtype=torch.float32).flatten()
    if engine_logits.numel() != logits.numel():
        print(f"last logits: engine has {engine_logits.numel()}, transformers {logits.numel()}: FAIL")
        ok = False
    else:
        d = (engine_logits - logits).abs().max().item()
        print(f"last logits max abs difference: {d:.3e} (tolerance {args.tolerance:g}); "
              f"engine argmax {int(engine_logits.argmax())}")
        ok &= d <= args.tolerance
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
