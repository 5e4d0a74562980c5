"""Writes Tests/Fixtures/tiny-llava/reference-pdrop.safetensors: PyramidDrop and FastV golden outputs
on the tiny random llava-hf checkpoint (8 decoder layers, 4 query heads / 2 KV heads).

    python tools/reference/make_pdrop_fixtures.py [--model DIR] [--out FILE]

Reads (never writes) the checkpoint and reference-image.safetensors of Tests/Fixtures/tiny-llava.
The file format is described in tools/reference/README.md. Run after make_llava_fixtures.py.
"""
import argparse
import json
import os
import sys
import time

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from skimage import data as skimage_data
from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pdrop_reference as ref  # noqa: E402

DEFAULT_MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures", "tiny-llava"))
DEFAULT_OUT = os.path.join(DEFAULT_MODEL, "reference-pdrop.safetensors")
TWO_IMAGE_PROMPT = "USER: <image>\n<image>\nCompare these images. ASSISTANT:"
SCHEDULE = {"layers": [2, 4, 6], "ratios": [0.5, 0.25, 0.125]}
FASTV = {"fastv_k": 2, "fastv_r": 0.5}
# Per-layer hidden states only for these cases (the file must stay < 4 MB).
HIDDEN_CASES = ("pdrop.reindex", "fastv.preserve")
# Same CLIPImageProcessor settings as make_llava_fixtures.py (llava-hf's preprocessor_config.json).
PREPROCESSOR = {
    "crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336},
}


def two_image_inputs(model_dir):
    """input_ids (1, T) and pixel_values (2, 3, 336, 336) for TWO_IMAGE_PROMPT with scikit-image's
    chelsea (cat) and coffee photographs, through LlavaProcessor as make_llava_fixtures.py builds it."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(**PREPROCESSOR), tokenizer=tokenizer,
                               patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    images = [Image.fromarray(skimage_data.chelsea()).convert("RGB"),
              Image.fromarray(skimage_data.coffee()).convert("RGB")]
    inputs = processor(images=images, text=TWO_IMAGE_PROMPT, return_tensors="pt")
    return inputs["input_ids"].to(torch.long), inputs["pixel_values"].to(torch.float32)


def margins(result):
    """How robust the golden choices are: the smallest relative gap, at any drop, between the last
    kept and the first dropped score; and the smallest top-1 minus top-2 logit over greedy steps."""
    gaps = []
    for kept_blocks, score_blocks in zip(result["kept"], result["scores"]):
        for kept, scores in zip(kept_blocks, score_blocks):
            if kept.numel() < scores.numel():
                v = torch.sort(scores, descending=True).values
                n = kept.numel()
                gaps.append(((v[n - 1] - v[n]) / v[n - 1]).item())
    steps = [result["logits_last"][0]] + result["decode_logits"]
    greedy = min((lambda t: (t[0] - t[1]).item())(torch.topk(l, 2).values) for l in steps)
    return (min(gaps) if gaps else None), greedy


def case_tensors(name, result, store_hidden):
    """The tensors of one case, named as README.md describes."""
    t = {}
    multi = len(result["blocks"]) > 1
    for s, (kept_blocks, score_blocks) in enumerate(zip(result["kept"], result["scores"])):
        for b, (kept, scores) in enumerate(zip(kept_blocks, score_blocks)):
            suffix = f".block.{b}" if multi else ""
            t[f"{name}.kept.{s}{suffix}"] = kept.to(torch.int64)
            t[f"{name}.scores.{s}{suffix}"] = scores.to(torch.float32)
        t[f"{name}.positions.{s}"] = result["positions"][s].to(torch.int64)
    if store_hidden:
        for i, h in enumerate(result["hidden"]):
            t[f"{name}.hidden.layer.{i}"] = h.to(torch.float32)
    t[f"{name}.logits.last"] = result["logits_last"].to(torch.float32)
    t[f"{name}.greedy_tokens"] = result["greedy_tokens"].to(torch.int64)
    t[f"{name}.cache_lengths"] = result["cache_lengths"].to(torch.int64)
    return t


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    start = time.time()
    torch.manual_seed(0)

    model = ref.load_model(args.model)
    image = load_file(os.path.join(args.model, "reference-image.safetensors"))
    input_ids = image["input_ids"].view(1, -1).to(torch.long)
    pixel_values = image["pixel_values"].unsqueeze(0)
    two_ids, two_pixels = two_image_inputs(args.model)

    # ---- sanity checks ----
    print("sanity (single image prompt):")
    report, none = ref.sanity_checks(model, input_ids, pixel_values)
    # Also against the model with its default (sdpa) attention, and against the stored fixture.
    sdpa = LlavaForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    sdpa_logits, sdpa_tokens = ref.model_greedy(sdpa, input_ids, pixel_values)
    # (eager and sdpa attention differ by fp32 rounding only: ~1e-5 on logits of magnitude ~6)
    d_last = (none["logits_last"][0] - sdpa_logits[-1]).abs().max().item()
    d = (none["logits"] - sdpa_logits).abs().max().item()
    assert d_last <= 1e-5 and d <= 1e-4 and torch.equal(sdpa_tokens, none["greedy_tokens"]), (d_last, d)
    report["none_vs_sdpa_model_max_abs_logits_last"] = d_last
    report["none_vs_sdpa_model_max_abs_logits_all_rows"] = d
    d = (none["logits_last"] - image["logits.last"]).abs().max().item()
    assert d <= 1e-5 and torch.equal(image["greedy_tokens"], none["greedy_tokens"]), d
    report["none_vs_reference_image_fixture_max_abs_logits"] = d
    print("sanity (two-image prompt):")
    report_two, _ = ref.sanity_checks(model, two_ids, two_pixels)
    for k, v in report_two.items():
        report[f"twoimages.{k}"] = v
    del sdpa

    # ---- the cases ----
    cases = {
        "pdrop.reindex": dict(inputs=(input_ids, pixel_values), method="pdrop", positions="reindex", **SCHEDULE),
        "pdrop.preserve": dict(inputs=(input_ids, pixel_values), method="pdrop", positions="preserve", **SCHEDULE),
        "fastv.preserve": dict(inputs=(input_ids, pixel_values), method="fastv", positions="preserve", **FASTV),
        "fastv.reindex": dict(inputs=(input_ids, pixel_values), method="fastv", positions="reindex", **FASTV),
        "pdrop.twoimages": dict(inputs=(two_ids, two_pixels), method="pdrop", positions="reindex", **SCHEDULE),
    }
    # The projected features rather than the pixels (2.7 MB): the vision tower is tested elsewhere.
    with torch.no_grad():
        two_features = model.model.get_image_features(pixel_values=two_pixels, return_dict=True).pooler_output
    tensors = {"pdrop.twoimages.input_ids": two_ids[0],
               "pdrop.twoimages.image_features": torch.stack(list(two_features)).to(torch.float32)}
    metadata = {
        "source": "tools/reference/pdrop_reference.py (transformers LlavaForConditionalGeneration, fp32, "
                  "decoder layers run one by one with per-layer KV caches)",
        "spec": "../shared/PYRAMIDDROP.md",
        "model": "Tests/Fixtures/tiny-llava",
        "single_image_inputs": "Tests/Fixtures/tiny-llava/reference-image.safetensors (input_ids, pixel_values)",
        "two_image_prompt": TWO_IMAGE_PROMPT,
        "two_image_images": "scikit-image data.chelsea(), data.coffee() (raw arrays, no JPEG round trip)",
        "image_token_id": str(model.config.image_token_id),
        "greedy_steps": str(ref.GREEDY_STEPS),
        "cases": ",".join(cases),
        "hidden_cases": ",".join(HIDDEN_CASES),
        "sanity": json.dumps(report, sort_keys=True),
    }
    summary = {}
    for name, case in cases.items():
        ids, pixels = case.pop("inputs")
        result = ref.run(model, ids, pixels, **case)
        worst = ref.check_decode_against_prefill(model, ids, pixels, result,
                                                 **{k: v for k, v in case.items()})
        tensors.update(case_tensors(name, result, name in HIDDEN_CASES))
        kept_counts = [[int(k.numel()) for k in blocks] for blocks in result["kept"]]
        gap, greedy_margin = margins(result)
        meta = {"method": case["method"], "positions": result["positions_mode"],
                "prompt_length": int(ids.shape[1]),
                "image_blocks": [[s, e] for s, e in result["blocks"]],
                "drop_after_layers": [l for l, _ in result["stages"]],
                "kept_counts": kept_counts,
                "cache_lengths": result["cache_lengths"].tolist(),
                "min_kept_boundary_relative_gap": gap, "min_greedy_top2_logit_margin": greedy_margin}
        if case["method"] == "pdrop":
            meta.update(layers=case["layers"], ratios=case["ratios"])
        else:
            meta.update(K=case["fastv_k"], R=case["fastv_r"])
        metadata[name] = json.dumps(meta, sort_keys=True)
        summary[name] = (kept_counts, result["greedy_tokens"].tolist(), result["cache_lengths"].tolist(), worst)
        print(f"{name}: kept {kept_counts} cache {result['cache_lengths'].tolist()} "
              f"greedy {result['greedy_tokens'].tolist()} (decode vs prefill max diff {worst:.2e}; "
              f"boundary rel gap {gap:.1e}, greedy margin {greedy_margin:.1e})")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, args.out, metadata=metadata)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(tensors)} tensors, {size} bytes ({size / 2**20:.2f} MiB), "
          f"{time.time() - start:.1f} s")
    assert size < 4 * 2**20, "fixture file over 4 MiB"


if __name__ == "__main__":
    main()
