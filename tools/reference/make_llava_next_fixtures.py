"""LLaVA-NeXT (LlavaNextForConditionalGeneration) end to end on a tiny random checkpoint: real
photographs of several aspect ratios through LlavaNextProcessor (PIL backend, anyres), the vision
tower, the projector, transformers' anyres feature packing (base image, unpadded tiles,
image_newline), the decoder, greedy decoding, and PyramidDrop / FastV per pdrop_reference.py.

Writes to Tests/Fixtures:
  tiny-llava-next/        the llava-hf hub layout (as llava-hf/llava-v1.6-vicuna-7b-hf ships it):
                          model.safetensors (BF16; image_newline, vision_tower.vision_model.*,
                          multi_modal_projector.*, language_model.model.*, language_model.lm_head.weight),
                          config.json (model_type llava_next, rope_theta in text_config,
                          image_grid_pinpoints), preprocessor_config.json (LlavaNextImageProcessor,
                          the "scaled-56" config of make_anyres_fixtures.py), tokenizer.json and
                          tokenizer_config.json (tiny-llava's), reference-next.safetensors
  tiny-llava-next-saved/  the same weights as transformers 5's save_pretrained writes them (BF16,
                          its own tensor names, config.json, generation_config.json,
                          processor_config.json); the same reference applies (checked bit for bit)

Run after make_fixtures.py, make_tokenizer_fixtures.py and make_anyres_fixtures.py (it reads the
tokenizer of tiny-llava and the PNGs of anyres/):  python tools/reference/make_llava_next_fixtures.py
The tensors and metadata are described in tools/reference/README.md.
"""
import json
import os
import shutil
import sys
import time

import torch
import tokenizers
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
import transformers
from transformers import (AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaNextConfig,
                          LlavaNextForConditionalGeneration, LlavaNextProcessor)
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pdrop_reference as ref  # noqa: E402
from common import FIXTURES, fixture_dir, randomize, round_to, save_reference, write_json  # noqa: E402
from make_anyres_fixtures import CONFIGS as ANYRES_CONFIGS  # noqa: E402
from make_pdrop_fixtures import margins  # noqa: E402

PROMPT = "USER: <image>\nWhat is shown in this image? ASSISTANT:"
IMAGES = ["chelsea-451x300", "rocket-tall-200x500", "astronaut-512x512", "coffee-tiny-30x40",
          "astronaut-strip-400x64"]
PREPROCESSOR = ANYRES_CONFIGS["scaled-56"]          # llava-v1.6's preprocessor_config, crop 56
PINPOINTS = PREPROCESSOR["image_grid_pinpoints"]    # [[56,112],[112,56],[112,112],[168,56],[56,168]]
SCHEDULE = {"layers": [2, 4, 6], "ratios": [0.5, 0.25, 0.125]}
FASTV = {"fastv_k": 2, "fastv_r": 0.5}
SEED = 11           # tiny-llama 1, tiny-llava-saved 3, tiny-llava 7
GREEDY_STEPS = 16
IMAGE_TOKEN = 32000
HUB = "tiny-llava-next"
SAVED = "tiny-llava-next-saved"


# --------------------------------------------------------------------------------------------
# The checkpoint
# --------------------------------------------------------------------------------------------

def tiny_config():
    text = LlamaConfig(
        vocab_size=32064, hidden_size=32, intermediate_size=96, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=32001)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=56, patch_size=14, projection_dim=32)
    return LlavaNextConfig(text_config=text, vision_config=vision, image_token_index=IMAGE_TOKEN,
                           vision_feature_layer=-2, vision_feature_select_strategy="default",
                           image_grid_pinpoints=PINPOINTS, tie_word_embeddings=False)


def hub_config_json(config):
    """config.json as llava-hf/llava-v1.6-vicuna-7b-hf has it (with the tiny sizes spelled out)."""
    text, vision = config.text_config, config.vision_config
    return {
        "architectures": ["LlavaNextForConditionalGeneration"],
        "ignore_index": -100,
        "image_grid_pinpoints": PINPOINTS,
        "image_token_index": IMAGE_TOKEN,
        "model_type": "llava_next",
        "pad_token_id": 32001,
        "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "lmsys/vicuna-7b-v1.5",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "max_position_embeddings": text.max_position_embeddings,
            "model_type": "llama",
            "num_attention_heads": text.num_attention_heads,
            "num_hidden_layers": text.num_hidden_layers,
            "num_key_value_heads": text.num_key_value_heads,
            "pad_token_id": 0,
            "rms_norm_eps": text.rms_norm_eps,
            "rope_theta": 10000.0,
            "torch_dtype": "bfloat16",
            "vocab_size": text.vocab_size,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.39.0.dev0",
        "use_image_newline_parameter": True,
        "vision_config": {
            "hidden_size": vision.hidden_size,
            "image_size": vision.image_size,
            "intermediate_size": vision.intermediate_size,
            "model_type": "clip_vision_model",
            "num_attention_heads": vision.num_attention_heads,
            "num_hidden_layers": vision.num_hidden_layers,
            "patch_size": vision.patch_size,
            "projection_dim": vision.projection_dim,
            "vocab_size": 32000,
        },
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "vocab_size": 32064,
    }


def hub_name(name):
    """transformers 5 in-memory state-dict name -> llava-hf hub name (llava-v1.6 files)."""
    renames = [("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
               ("model.vision_tower.", "vision_tower.vision_model."),
               ("model.multi_modal_projector.", "multi_modal_projector."),
               ("model.image_newline", "image_newline")]
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old):]
    raise ValueError(f"unexpected tensor name {name}")


def reload_checked(directory, expected_state):
    """from_pretrained in fp32; every tensor must load (no missing / unexpected / mismatched keys)
    and equal the in-memory weights bit for bit."""
    model, info = LlavaNextForConditionalGeneration.from_pretrained(directory, dtype=torch.float32,
                                                                    output_loading_info=True)
    print(f"{os.path.basename(directory)}: loading info",
          {k: (sorted(v) if isinstance(v, (set, list)) else v) for k, v in info.items()})
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(key), f"{directory}: {key} = {info[key]}"
    state = model.state_dict()
    assert sorted(state) == sorted(expected_state), "parameter names differ after reload"
    for k, v in expected_state.items():
        assert torch.equal(state[k], v), f"{k} differs after reload"
    return info


def file_tensors(path):
    with safe_open(path, "pt") as f:
        return {k: (str(f.get_slice(k).get_dtype()), list(f.get_slice(k).get_shape())) for k in f.keys()}


def make_checkpoints():
    config = tiny_config()
    model = LlavaNextForConditionalGeneration(config).eval()
    randomize(model, seed=SEED)          # image_newline included (std 0.2)
    round_to(model, torch.bfloat16)
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}

    hub = fixture_dir(HUB)
    state = {hub_name(k): v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(hub, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(hub, "config.json"), hub_config_json(config))
    write_json(os.path.join(hub, "preprocessor_config.json"), PREPROCESSOR)
    shutil.copy(os.path.join(FIXTURES, "tiny-llava", "tokenizer.json"), hub)
    with open(os.path.join(FIXTURES, "tiny-llava", "tokenizer_config.json")) as f:
        tokenizer_config = json.load(f)
    tokenizer_config["processor_class"] = "LlavaNextProcessor"   # as llava-v1.6's says; else tiny-llava's
    with open(os.path.join(hub, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)
        f.write("\n")
    hub_info = reload_checked(hub, expected)

    processor = make_processor(hub)
    saved = fixture_dir(SAVED)
    for name in os.listdir(saved):
        os.remove(os.path.join(saved, name))
    model.to(torch.bfloat16).save_pretrained(saved)
    processor.save_pretrained(saved)
    # The saved layout's tests share tiny-llava's vocabulary: no tokenizer copy (1.1 MB).
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.json"):
        path = os.path.join(saved, name)
        if os.path.exists(path):
            os.remove(path)
    saved_info = reload_checked(saved, expected)
    return processor, {"hub": hub_info, "saved": saved_info}


def make_processor(directory):
    tokenizer = AutoTokenizer.from_pretrained(directory)
    image_processor = LlavaNextImageProcessorPil(**{k: v for k, v in PREPROCESSOR.items() if k not in (
        "image_processor_type", "processor_class", "aspect_ratio_setting")})
    # llava-hf's processor_config.json: patch_size 14, "default", num_additional_image_tokens 1 (CLS).
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1)


# --------------------------------------------------------------------------------------------
# Feature assembly, re-derived independently (to check the rules README.md states)
# --------------------------------------------------------------------------------------------

def anyres_layout(image_size, crop=56, patch=14):
    """Grid of tiles, the padded feature grid and its unpadded part, as the rules in README.md."""
    h, w = image_size
    best_h, best_w = select_best_resolution([h, w], PINPOINTS)
    rows, cols = best_h // crop, best_w // crop
    side = crop // patch
    H, W = rows * side, cols * side
    if w / h > W / H:                       # wider than the grid: rows are cut
        new = int(round(h * (W / w), 7))
        pad = (H - new) // 2
        unpadded = (H - 2 * pad, W)
        axis = "height"
    else:                                   # otherwise (also equal aspect): columns are cut
        new = int(round(w * (H / h), 7))
        pad = (W - new) // 2
        unpadded = (H, W - 2 * pad)
        axis = "width"
    return {"best_resolution": [best_h, best_w], "grid_shape": [rows, cols], "patches": 1 + rows * cols,
            "feature_grid_padded": [H, W], "unpad": {"axis": axis, "new_extent": new, "padding_each_side": pad},
            "unpadded_feature_grid": list(unpadded), "base_tokens": side * side, "newline_tokens": unpadded[0],
            "N": side * side + unpadded[0] * (unpadded[1] + 1)}


def assemble(per_patch, layout, newline):
    """per_patch (patches, 16, D): projector output per crop (base first, then tiles row-major)."""
    rows, cols = layout["grid_shape"]
    side = int(round(per_patch.shape[1] ** 0.5))
    D = per_patch.shape[-1]
    grid = per_patch[1:1 + rows * cols].reshape(rows, cols, side, side, D).permute(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * side, cols * side, D)
    pad = layout["unpad"]["padding_each_side"]
    if layout["unpad"]["axis"] == "height":
        grid = grid[pad:grid.shape[0] - pad]
    else:
        grid = grid[:, pad:grid.shape[1] - pad]
    grid = torch.cat([grid, newline.view(1, 1, D).expand(grid.shape[0], 1, D)], dim=1)
    return torch.cat([per_patch[0], grid.reshape(-1, D)], dim=0)


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------

def greedy_margin(logit_rows):
    return min((lambda t: (t[0] - t[1]).item())(torch.topk(l, 2).values) for l in logit_rows)


@torch.no_grad()
def record_image(name, processor, sdpa, eager, fast):
    image = Image.open(os.path.join(FIXTURES, "anyres", f"{name}.png")).convert("RGB")
    inputs = processor(images=image, text=PROMPT, return_tensors="pt")
    input_ids = inputs["input_ids"].to(torch.long)
    pixel_values = inputs["pixel_values"].to(torch.float32)        # (1, patches, 3, 56, 56)
    image_sizes = inputs["image_sizes"].to(torch.long)             # (1, 2) [height, width]
    image_inputs = {"pixel_values": pixel_values, "image_sizes": image_sizes}
    ids = input_ids[0]
    T = ids.shape[0]
    blocks = ref.image_blocks(ids, IMAGE_TOKEN)
    assert len(blocks) == 1
    start, end = blocks[0]
    N = end - start

    layout = anyres_layout(image_sizes[0].tolist())
    assert [image.height, image.width] == image_sizes[0].tolist()
    assert pixel_values.shape[1] == layout["patches"], (pixel_values.shape, layout)
    assert layout["N"] == N, (layout, N)
    assert processor.replace_image_token(inputs, 0).count("<image>") == N

    # The processor's ids must be what the tokenizers library gives for tokenizer.json.
    expanded = PROMPT.replace("<image>", "<image>" * N)
    assert fast.encode(expanded).ids == ids.tolist(), "processor and tokenizers disagree"

    # The packed features, and what the decoder really receives in the image rows.
    inner = sdpa.model
    packed = inner.get_image_features(**image_inputs, return_dict=True).pooler_output
    assert len(packed) == 1 and packed[0].shape == (N, 32)
    features = packed[0]
    captured = {}
    handle = inner.language_model.register_forward_pre_hook(
        lambda m, a, kw: captured.__setitem__("embeds", kw["inputs_embeds"][0].clone()), with_kwargs=True)
    out = sdpa(input_ids=input_ids, use_cache=True, **image_inputs)
    handle.remove()
    assert torch.equal(captured["embeds"][start:end], features), "image rows != packed features"
    text_rows = torch.cat([captured["embeds"][:start], captured["embeds"][end:]])
    assert torch.equal(text_rows, inner.get_input_embeddings()(torch.cat([ids[:start], ids[end:]])))
    # Independent assembly from the per-crop projector outputs.
    vision = inner.vision_tower(pixel_values[0], output_hidden_states=True)
    per_patch = inner.multi_modal_projector(vision.hidden_states[-2][:, 1:])      # (patches, 16, 32)
    mine = assemble(per_patch, layout, inner.image_newline)
    assert torch.equal(mine, features), (mine - features).abs().max()
    # image_newline rows: the last of each unpadded row.
    r, c = layout["unpadded_feature_grid"]
    newline_rows = [16 + i * (c + 1) + c for i in range(r)]
    assert all(torch.equal(features[j], inner.image_newline) for j in newline_rows)

    # The model's own forward (default attention) and its KV cache: logits.last and greedy tokens.
    logits, past = out.logits[0], out.past_key_values
    token, generated, steps = logits[-1].argmax(), [], [logits[-1]]
    for step in range(GREEDY_STEPS):
        generated.append(int(token))
        if step == GREEDY_STEPS - 1:
            break
        o = sdpa(input_ids=token.view(1, 1), past_key_values=past, use_cache=True)
        past, token = o.past_key_values, o.logits[0, -1].argmax()
        steps.append(o.logits[0, -1])
    greedy = torch.tensor(generated, dtype=torch.long)

    # Layer by layer (eager) with no reduction equals the model (sanity_checks asserts it vs the eager
    # model; here also vs the sdpa model), then PDrop and FastV.
    print(f"{name}: N {N} T {T} grid {layout['grid_shape']} unpadded {layout['unpadded_feature_grid']}")
    sanity, none = ref.sanity_checks(eager, input_ids, image_inputs, verbose=False)
    d_last = (none["logits_last"][0] - logits[-1]).abs().max().item()
    d_all = (none["logits"] - logits).abs().max().item()
    assert d_last <= 1e-5 and d_all <= 1e-4 and torch.equal(none["greedy_tokens"], greedy), (d_last, d_all)
    sanity["none_vs_sdpa_model_max_abs_logits_last"] = d_last
    sanity["none_vs_sdpa_model_max_abs_logits_all_rows"] = d_all

    tensors = {
        f"{name}.pixel_values": pixel_values[0],
        f"{name}.image_size": image_sizes[0],
        f"{name}.input_ids": ids,
        f"{name}.image_features": features,
        f"{name}.logits.last": logits[-1:].clone(),
        f"{name}.greedy_tokens": greedy,
    }
    meta = dict(layout)
    meta.update({"image": f"anyres/{name}.png", "image_size": image_sizes[0].tolist(), "prompt_length": T,
                 "image_block": [start, end], "text_before": start, "text_after": T - end,
                 "newline_rows_in_block": newline_rows,
                 "min_greedy_top2_logit_margin": greedy_margin(steps), "sanity": sanity})
    for case, kwargs in (("pdrop", dict(method="pdrop", positions="reindex", **SCHEDULE)),
                         ("fastv", dict(method="fastv", positions="preserve", **FASTV))):
        result = ref.run(eager, input_ids, image_inputs, **kwargs)
        worst = ref.check_decode_against_prefill(eager, input_ids, image_inputs, result, **kwargs)
        gap, margin = margins(result)
        for s, kept in enumerate(result["kept"]):
            tensors[f"{name}.{case}.kept.{s}"] = kept[0].to(torch.int64)
        tensors[f"{name}.{case}.logits.last"] = result["logits_last"]
        tensors[f"{name}.{case}.greedy_tokens"] = result["greedy_tokens"]
        info = {"kept_counts": [int(k[0].numel()) for k in result["kept"]],
                "cache_lengths": result["cache_lengths"].tolist(), "positions": result["positions_mode"],
                "drop_after_layers": [l for l, _ in result["stages"]],
                "min_kept_boundary_relative_gap": gap, "min_greedy_top2_logit_margin": margin,
                "decode_vs_prefill_max_abs": worst}
        info.update({"layers": SCHEDULE["layers"], "ratios": SCHEDULE["ratios"]} if case == "pdrop"
                    else {"K": FASTV["fastv_k"], "R": FASTV["fastv_r"]})
        meta[case] = info
        print(f"  {case}: kept {info['kept_counts']} cache {info['cache_lengths']} "
              f"greedy {result['greedy_tokens'].tolist()} gap {gap:.1e} margin {margin:.1e} decode {worst:.1e}")
    print(f"  none: greedy {greedy.tolist()} margin {meta['min_greedy_top2_logit_margin']:.1e}")
    return tensors, meta


def main():
    begin = time.time()
    torch.manual_seed(0)
    processor, loading = make_checkpoints()
    hub, saved = os.path.join(FIXTURES, HUB), os.path.join(FIXTURES, SAVED)
    sdpa = LlavaNextForConditionalGeneration.from_pretrained(hub, dtype=torch.float32).eval()
    eager = ref.load_model(hub, LlavaNextForConditionalGeneration)
    fast = tokenizers.Tokenizer.from_file(os.path.join(hub, "tokenizer.json"))

    tensors, metadata = {}, {}
    for name in IMAGES:
        t, meta = record_image(name, processor, sdpa, eager, fast)
        tensors.update(t)
        metadata[name] = json.dumps(meta, sort_keys=True)

    # The saved layout holds the same weights: its model gives the same logits, bit for bit.
    saved_model = LlavaNextForConditionalGeneration.from_pretrained(saved, dtype=torch.float32).eval()
    for name in IMAGES:
        inputs = {"pixel_values": tensors[f"{name}.pixel_values"][None],
                  "image_sizes": tensors[f"{name}.image_size"][None]}
        with torch.no_grad():
            logits = saved_model(input_ids=tensors[f"{name}.input_ids"][None], **inputs).logits[0, -1:]
        assert torch.equal(logits, tensors[f"{name}.logits.last"]), name

    metadata.update({
        "images": ",".join(IMAGES),
        "prompt": PROMPT,
        "image_token_id": str(IMAGE_TOKEN),
        "greedy_steps": str(GREEDY_STEPS),
        "pdrop": json.dumps({"method": "pdrop", "positions": "reindex", **SCHEDULE}),
        "fastv": json.dumps({"method": "fastv", "positions": "preserve", "K": FASTV["fastv_k"], "R": FASTV["fastv_r"]}),
        "model": "Tests/Fixtures/tiny-llava-next (also tiny-llava-next-saved: same weights)",
        "preprocessor": "Tests/Fixtures/tiny-llava-next/preprocessor_config.json (= anyres/scaled-56.json), "
                        "LlavaNextImageProcessorPil; LlavaNextProcessor patch_size 14, default, "
                        "num_additional_image_tokens 1",
        "source": f"tools/reference/make_llava_next_fixtures.py, transformers {transformers.__version__}, "
                  f"torch {torch.__version__}; PDrop/FastV per tools/reference/pdrop_reference.py",
        "spec": "../shared/PYRAMIDDROP.md (N = the whole anyres block)",
    })
    path = os.path.join(hub, "reference-next.safetensors")
    save_reference(path, tensors, metadata)

    print("hub tensors:", len(file_tensors(os.path.join(hub, "model.safetensors"))))
    print("saved tensors:")
    for k, v in sorted(file_tensors(os.path.join(saved, "model.safetensors")).items()):
        print("  ", k, v)
    print("saved files:", sorted(os.listdir(saved)))
    for directory in (hub, saved):
        for f in sorted(os.listdir(directory)):
            print(f"  {os.path.basename(directory)}/{f}: {os.path.getsize(os.path.join(directory, f))} bytes")
    print(f"reference-next: {len(tensors)} tensors; {time.time() - begin:.1f} s")


if __name__ == "__main__":
    main()
