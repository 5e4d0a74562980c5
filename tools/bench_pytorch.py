"""PyTorch side of `pdrop bench --model DIR --pytorch DIR/pytorch.json`.

Builds a LLaVA at a shape that fits in fp32 memory here (CLIP ViT-L/14-336 + a 1.1B Llama:
d 2048, 22 layers, m 5632, 32 heads / 4 KV heads), with random weights (the same for either
--dtype: drawn in fp32, then rounded), and saves it with save_pretrained (safetensors in --dtype)
together with the benchmark's inputs, so the Swift engine runs exactly the same work (with a bf16
checkpoint, under `--compute bf16`). Then times on CPU in --dtype (bf16: oneDNN's bf16 products where
the CPU has them), with as many threads as the Swift side uses:
  - the vision tower + projector (get_image_features),
  - the language model's prefill without reduction (transformers' own forward, sdpa attention,
    plus lm_head on the last position),
  - the prefill with PyramidDrop (tools/reference/pdrop_reference.py, the paper's default schedule
    for 22 layers: after 5, 11, 16 layers keep 50%, 25%, 12.5%), vision time subtracted.
Each figure is the best of --repeats runs. Writes DIR/pytorch.json.

    python tools/bench_pytorch.py --out .build/bench-1b [--dtype fp32|bf16] [--threads 2] [--repeats 2]
"""
import argparse
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import pdrop_reference as ref  # noqa: E402

TEXT_BEFORE, TEXT_AFTER, IMAGE_TOKENS = 5, 35, 576
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(out, dtype):
    text = LlamaConfig(vocab_size=32064, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                       num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=32000)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval().to(dtype)
    model.save_pretrained(out)
    ids = [1] + [3 + (i * 7919) % 31000 for i in range(1, TEXT_BEFORE)] + [32000] * IMAGE_TOKENS \
        + [3 + (i * 7919) % 31000 for i in range(TEXT_AFTER)]
    input_ids = torch.tensor([ids])
    pixel_values = torch.rand(1, 3, 336, 336, generator=torch.Generator().manual_seed(1)) * 2 - 1
    save_file({"input_ids": input_ids[0].clone(), "pixel_values": pixel_values[0].clone()},
              os.path.join(out, "bench-inputs.safetensors"))
    return model, input_ids, pixel_values.to(dtype)


def best(repeats, body):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="weights and compute (default fp32)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    model, input_ids, pixel_values = build(args.out, DTYPES[args.dtype])
    layers = model.config.text_config.num_hidden_layers
    schedule = {"layers": [s * layers // 4 for s in (1, 2, 3)], "ratios": [0.5, 0.25, 0.125]}

    with torch.no_grad():
        vision = best(args.repeats, lambda: model.model.get_image_features(pixel_values=pixel_values))
        embeds = ref.merged_embeddings(model, input_ids, pixel_values)

        def vanilla():
            out = model.model.language_model(inputs_embeds=embeds, use_cache=True)
            model.lm_head(out.last_hidden_state[:, -1:])
        prefill_none = best(args.repeats, vanilla)
        pdrop_total = best(args.repeats, lambda: ref.run(model, input_ids, pixel_values, "pdrop", greedy_steps=1, **schedule))
    result = {
        "torch": torch.__version__, "dtype": args.dtype, "threads": args.threads, "imageTokens": IMAGE_TOKENS,
        "textTokens": TEXT_BEFORE + TEXT_AFTER, "schedule": schedule, "visionSeconds": vision,
        "prefillSecondsNone": prefill_none, "prefillSecondsPDrop": pdrop_total - vision,
        "note": "best of %d; PDrop = pdrop_reference.run(greedy_steps=1) minus the vision time" % args.repeats,
    }
    with open(os.path.join(args.out, "pytorch.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
