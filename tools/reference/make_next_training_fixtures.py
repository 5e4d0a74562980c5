"""Writes Tests/Fixtures/training/reference-train-next.safetensors: the training golden file of
docs/TRAINING.md (with and without PyramidDrop) for LLaVA-NeXT, on the tiny random checkpoint
Tests/Fixtures/tiny-llava-next and the SAME data as reference-train.safetensors
(Tests/Fixtures/training/data.json + images/).

    python tools/reference/make_next_training_fixtures.py [--model DIR] [--data DIR] [--out FILE] [--skip-fd]

Differences from make_training_fixtures.py (LLaVA-1.5), all through training_reference.py:
  * images through LlavaNextImageProcessor (PIL backend) of the checkpoint's preprocessor_config.json:
    per image pixel_values (1 + rows*cols, 3, 56, 56) and image_sizes [height, width]; a batch's
    are zero-padded on the patch axis to the most patches and stacked, as the processor batches
    several images (asserted equal to the processor's own batch);
  * the record's single <image> expands to that image's own count (LlavaNextProcessor's
    replace_image_token: base 16 + unpadded grid + one newline per grid row), labels -100 there;
    the processor's input_ids of the rendered text are asserted equal to build_sample's;
  * N of a sample (PyramidDrop budgets, kept indices) = the whole anyres block, newlines included;
  * `image_newline` is a parameter with a gradient (name "image_newline" as in model.safetensors).

Reads (never writes) Tests/Fixtures/tiny-llava-next and Tests/Fixtures/training/{data.json,images};
run after make_llava_next_fixtures.py and make_training_fixtures.py. About a minute.
"""
import argparse
import json
import os
import sys
import time

import torch
import tokenizers
import transformers
from PIL import Image
from transformers import AutoTokenizer, LlavaNextProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import training_reference as tr  # noqa: E402
import make_llava_next_fixtures as mn  # noqa: E402
import make_training_fixtures as mt  # noqa: E402
from common import FIXTURES, save_reference  # noqa: E402

DEFAULT_MODEL = os.path.normpath(os.path.join(FIXTURES, "tiny-llava-next"))
DEFAULT_DATA = os.path.normpath(os.path.join(FIXTURES, "training"))
OUT_NAME = "reference-train-next.safetensors"
SCHEDULE = mt.SCHEDULE            # layers [2, 4, 6], ratios [0.5, 0.25, 0.125], reindex
STEP_RECORDS = mt.STEP_RECORDS    # [0, 1, 2]
ADAMW = mt.ADAMW                  # 10 steps, batch 2, lr 2e-3, warmup 3, cosine, wd 0.1 (ndim >= 2), clip 1.0
EMBED = mt.EMBED
FINAL_PARAMETERS = ["image_newline", "multi_modal_projector.linear_2.bias",
                    "vision_tower.vision_model.embeddings.class_embedding",
                    "language_model.model.layers.7.self_attn.q_proj.weight", "language_model.model.norm.weight"]


# --------------------------------------------------------------------------------------------
# Processor, token counts
# --------------------------------------------------------------------------------------------

def make_processor(model_dir, config):
    """LlavaNextProcessor as llava-hf's processor_config.json sets it up: the checkpoint's tokenizer,
    LlavaNextImageProcessorPil of preprocessor_config.json, patch_size 14, the config's select
    strategy, num_additional_image_tokens 1 (CLS)."""
    image_processor = tr.image_processor_from(model_dir)
    assert tr.is_anyres(image_processor)
    assert [list(p) for p in image_processor.image_grid_pinpoints] == [list(p) for p in config.image_grid_pinpoints]
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(model_dir),
                              patch_size=config.vision_config.patch_size,
                              vision_feature_select_strategy=config.vision_feature_select_strategy,
                              num_additional_image_tokens=1)


def token_counter(processor):
    """image path -> LlavaNextProcessor's number of <image> tokens for that image."""
    def count(path):
        image = Image.open(path).convert("RGB")
        inputs = processor.image_processor(images=image, return_tensors="pt")
        return processor.replace_image_token(inputs, 0).count(processor.image_token)
    return count


def check_processor_ids(processor, record, sample):
    """LlavaNextProcessor on the rendered text (and the image) gives build_sample's input_ids."""
    text, _ = tr.render(record["conversations"])
    if sample["image"] is None:
        ids = processor(text=text, return_tensors="pt")["input_ids"][0]
    else:
        ids = processor(text=text, images=Image.open(sample["image"]).convert("RGB"), return_tensors="pt")["input_ids"][0]
    assert torch.equal(ids.to(torch.int64), sample["input_ids"]), f"processor ids differ for record {sample['index']}"


def check_patch_padding(model, image_processor, image):
    """The data's three images all have 5 crops, so no batch of the fixture pads the patch axis.
    Checked here on [a 5-crop image, anyres/rocket-tall-200x500.png (3 x 1 grid, 4 crops)]:
    stack_image_inputs = the processor's own batch (zero crop appended), and get_image_features on
    the padded 5-D batch = each image alone (the zero crop is sliced off by image_sizes)."""
    rocket = Image.open(os.path.join(FIXTURES, "anyres", "rocket-tall-200x500.png")).convert("RGB")
    singles = []
    for im in (image, rocket):
        out = image_processor(images=im, return_tensors="pt")
        singles.append({"pixel_values": out["pixel_values"][0], "image_sizes": out["image_sizes"][0]})
    stacked = tr.stack_image_inputs(singles)
    own = image_processor(images=[image, rocket], return_tensors="pt")
    assert [x["pixel_values"].shape[0] for x in singles] == [5, 4]
    assert torch.equal(stacked["pixel_values"], own["pixel_values"]) and torch.equal(stacked["image_sizes"], own["image_sizes"])
    assert bool((stacked["pixel_values"][1, 4] == 0).all())
    with torch.no_grad():
        together = model.model.get_image_features(**stacked, return_dict=True).pooler_output
        worst = 0.0
        for x, f in zip(singles, together):
            alone = model.model.get_image_features(pixel_values=x["pixel_values"][None], image_sizes=x["image_sizes"][None],
                                                   return_dict=True).pooler_output[0]
            assert alone.shape == f.shape
            worst = max(worst, (alone - f).abs().max().item())
    assert worst <= 1e-5
    return {"crops": [5, 4], "equal_processor_batch": True, "features_batched_vs_alone_max_abs": worst,
            "N": [int(f.shape[0]) for f in together]}


# --------------------------------------------------------------------------------------------
# Gradient routing through pack_image_features
# --------------------------------------------------------------------------------------------

def forward_none_assembled(model, batch):
    """forward_none with the image block built by make_llava_next_fixtures.assemble (an independent
    re-implementation of pack_image_features: base, unpadded tile map, newline per row) instead of
    get_image_features; all crops of all images through CLIP at once, as transformers does."""
    inner, lm = model.model, model.model.language_model
    embeds = inner.get_input_embeddings()(batch["input_ids"])
    pv = batch["pixel_values"]
    layouts = [mn.anyres_layout(size.tolist()) for size in pv["image_sizes"]]
    crops = torch.cat([pv["pixel_values"][i, :layout["patches"]] for i, layout in enumerate(layouts)])
    vision = inner.vision_tower(crops, output_hidden_states=True)
    per_crop = inner.multi_modal_projector(vision.hidden_states[model.config.vision_feature_layer][:, 1:])
    blocks = [mn.assemble(p, layout, inner.image_newline)
              for p, layout in zip(torch.split(per_crop, [l["patches"] for l in layouts]), layouts)]
    mask = (batch["input_ids"] == model.config.image_token_id).unsqueeze(-1)
    hidden = embeds.masked_scatter(mask, torch.cat(blocks))
    for layer in lm.layers:
        hidden = tr.run_layer(layer, lm.rotary_emb, hidden, batch["lengths"])
    return tr.causal_lm_loss(model.lm_head(lm.norm(hidden)), batch["labels"])


class Capture:
    """Keeps the gradient of the decoder's input (inputs_embeds) and of the projector's per-crop
    output during one backward of training_reference's forwards."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.original = tr.merged_embeddings

        def merged(model, input_ids, pixel_values):
            embeds = self.original(model, input_ids, pixel_values)
            embeds.retain_grad()
            self.embeds = embeds
            return embeds

        def hook(module, args, output):
            output.retain_grad()
            self.projected = output

        tr.merged_embeddings = merged
        self.handle = self.model.model.multi_modal_projector.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        tr.merged_embeddings = self.original
        self.handle.remove()
        return False


def routing_checks(model, batch, method, grads, capture):
    """(1) image_newline's gradient = the sum of d loss / d inputs_embeds over every newline row of
    every image block; (2) the projector outputs that unpad_image cuts away get exactly zero gradient,
    every other one a nonzero gradient. Returns a report."""
    image_token_id = model.config.image_token_id
    pv = batch["pixel_values"]
    layouts = [mn.anyres_layout(size.tolist()) for size in pv["image_sizes"]]
    d_embeds = capture.embeds.grad
    newline_sum = torch.zeros_like(grads["image_newline"], dtype=torch.float64)
    image = 0
    for b in range(batch["input_ids"].shape[0]):
        positions = torch.nonzero(batch["input_ids"][b] == image_token_id).flatten()
        if positions.numel() == 0:
            continue
        r, c = layouts[image]["unpadded_feature_grid"]
        base = layouts[image]["base_tokens"]
        rows = positions[torch.tensor([base + i * (c + 1) + c for i in range(r)])]
        newline_sum += d_embeds[b, rows].double().sum(dim=0)
        image += 1
    report = {"image_newline_grad_vs_sum_of_newline_row_grads_max_abs":
              (newline_sum - grads["image_newline"].double()).abs().max().item()}

    d_proj = capture.projected.grad          # (crops, 16, D)
    cut, zero_outside, start = 0, True, 0
    for layout in layouts:
        rows, cols = layout["grid_shape"]
        side = int(round(d_proj.shape[1] ** 0.5))
        tiles = d_proj[start + 1:start + layout["patches"]].reshape(rows, cols, side, side, -1)
        grid = tiles.permute(0, 2, 1, 3, 4).reshape(rows * side, cols * side, -1).abs().amax(dim=-1)
        keep = torch.zeros_like(grid, dtype=torch.bool)
        pad = layout["unpad"]["padding_each_side"]
        if layout["unpad"]["axis"] == "height":
            keep[pad:grid.shape[0] - pad] = True
        else:
            keep[:, pad:grid.shape[1] - pad] = True
        cut += int((~keep).sum())
        zero_outside &= bool((grid[~keep] == 0).all()) and bool((grid[keep] > 0).all())
        zero_outside &= bool((d_proj[start].abs().amax(dim=-1) > 0).all())      # base crop: all used
        start += layout["patches"]
    report["unpadded_away_features"] = cut
    report["cut_features_zero_grad_others_nonzero"] = zero_outside
    assert report["image_newline_grad_vs_sum_of_newline_row_grads_max_abs"] < 1e-5, (method, report)
    assert zero_outside, (method, report)
    return report


# --------------------------------------------------------------------------------------------
# float64
# --------------------------------------------------------------------------------------------

def double_inputs(image_inputs):
    if image_inputs is None:
        return None
    return {"pixel_values": image_inputs["pixel_values"].double(), "image_sizes": image_inputs["image_sizes"]}


def float64_checks(model_dir, step_samples, samples, pad_token_id, image_processor, kept, fp32, fp32_adamw, skip_fd):
    """As make_training_fixtures.float64_checks: the step (loss, every gradient) and the 10 AdamW
    losses in float64 (softmax and RMSNorm kept in fp64) vs fp32; unless skip_fd, central finite
    differences (eps 1e-6) vs autograd for a few scalars, image_newline among them."""
    report = {}
    with mt.Float64Everywhere():
        model = tr.load_model(model_dir, dtype=torch.float64)
        batch = tr.collate(step_samples, pad_token_id, image_processor)
        batch["pixel_values"] = double_inputs(batch["pixel_values"])
        for method in ("none", "pdrop"):
            model.zero_grad(set_to_none=True)
            if method == "none":
                loss = tr.forward_none(model, batch)[0]
            else:
                loss, natural = tr.forward_pdrop(model, batch, SCHEDULE["layers"], SCHEDULE["ratios"])
                assert mt.same_kept(kept, natural["kept"]), "fp64 ranking keeps other tokens than fp32"
            loss.backward()
            grads, _ = tr.gradients(model)
            loss32, grads32 = fp32[method]
            report[f"{method}_step_loss_abs"] = abs(loss.item() - loss32.item())
            report[f"{method}_step_grad_max_abs"] = max((grads[k] - grads32[k].double()).abs().max().item()
                                                        for k in grads32)
            report[f"{method}_step_grad_max_rel_to_tensor_max"] = max(
                ((grads[k] - grads32[k].double()).abs().max() / grads[k].abs().max()).item()
                for k in grads32 if grads[k].abs().max() > 1e-6)
            if not skip_fd:
                report[f"{method}_finite_difference_max_error"] = finite_difference(model, batch, method, kept)
        for method in ("none", "pdrop"):
            fresh = tr.load_model(model_dir, dtype=torch.float64)
            cache = {s["image"]: double_inputs(tr.pixel_values_of(s["image"], image_processor))
                     for s in samples if s["image"]}
            run = tr.train(fresh, samples, method, SCHEDULE if method == "pdrop" else None, ADAMW["steps"],
                           ADAMW["batch_size"], ADAMW["lr"], ADAMW["warmup_steps"], ADAMW["weight_decay"],
                           ADAMW["max_grad_norm"], pad_token_id, image_processor, cache)
            report[f"{method}_adamw_losses_max_abs"] = max(abs(a - b) for a, b in zip(run["losses"],
                                                                                       fp32_adamw[method]))
            print(f"  fp64 adamw {method}: losses {[round(x, 6) for x in run['losses']]}")
    return report


def finite_difference(model, batch, method, kept, eps=1e-6):
    params = dict(model.named_parameters())
    label = int(batch["labels"][0][batch["labels"][0] >= 0][0])
    picks = [("model.image_newline", (5,)),
             ("model.image_newline", (17,)),
             ("model.multi_modal_projector.linear_1.weight", (3, 5)),
             ("model.language_model.layers.3.self_attn.q_proj.weight", (1, 2)),
             ("model.vision_tower.encoder.layers.0.mlp.fc1.weight", (0, 0)),
             ("model.vision_tower.embeddings.class_embedding", (6,)),
             ("model.vision_tower.embeddings.patch_embedding.weight", (2, 1, 3, 4)),
             ("lm_head.weight", (label, 1))]

    def loss_at():
        if method == "none":
            return tr.forward_none(model, batch)[0].item()
        loss, _ = tr.forward_pdrop(model, batch, SCHEDULE["layers"], SCHEDULE["ratios"], force_kept=kept)
        _, natural = tr.forward_pdrop(model, batch, SCHEDULE["layers"], SCHEDULE["ratios"])
        assert mt.same_kept(kept, natural["kept"]), "the ranking changed under a 1e-6 perturbation"
        return loss.item()

    worst = 0.0
    for name, index in picks:
        p = params[name]
        analytic = p.grad[index].item()
        with torch.no_grad():
            original = p[index].item()
            values = []
            for sign in (1, -1):
                p[index] = original + sign * eps
                values.append(loss_at())
            p[index] = original
        numeric = (values[0] - values[1]) / (2 * eps)
        error = abs(analytic - numeric) / max(abs(numeric), 1e-3)
        worst = max(worst, error)
        print(f"    fd {method} {tr.checkpoint_name(name)}{list(index)}: autograd {analytic:.10e} "
              f"numeric {numeric:.10e} err {error:.1e}")
    assert worst < 1e-5, f"finite differences disagree ({method}): {worst}"
    return worst


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with data.json and images/")
    parser.add_argument("--out", default=None, help=f"output file (default DATA/{OUT_NAME})")
    parser.add_argument("--skip-fd", action="store_true", help="skip the float64 finite differences")
    args = parser.parse_args()
    out = args.out or os.path.join(args.data, OUT_NAME)
    torch.manual_seed(0)
    started = time.time()

    with open(os.path.join(args.data, "data.json")) as f:
        records = json.load(f)
    assert records == mt.RECORDS, "data.json is not make_training_fixtures.py's"
    images = os.path.join(args.data, "images")
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = tr.load_model(args.model)
    config = model.config
    assert type(model).__name__ == "LlavaNextForConditionalGeneration"
    assert [list(p) for p in config.image_grid_pinpoints] == mn.PINPOINTS
    processor = make_processor(args.model, config)
    image_processor = processor.image_processor
    pad_token_id, image_token_id = config.pad_token_id, config.image_token_id
    max_length = config.text_config.max_position_embeddings
    count = token_counter(processor)

    tensors, sanity = {}, {}

    # ---------------- data ----------------
    samples = [tr.build_sample(r, images, tokenizer, index=i, image_token_id=image_token_id,
                               num_image_tokens=count, max_length=max_length) for i, r in enumerate(records)]
    records_meta, pixel_cache = [], {}
    for r, s in enumerate(samples):
        check_processor_ids(processor, records[r], s)
        tensors[f"data.{r}.input_ids"] = s["input_ids"]
        tensors[f"data.{r}.labels"] = s["labels"]
        learned = s["labels"] != tr.IGNORE
        meta = {"id": s["id"], "image": os.path.basename(s["image"]) if s["image"] else None,
                "length": int(s["input_ids"].shape[0]), "learned_labels": int(learned.sum()),
                "query_rows": tr.query_rows_of(s["labels"]),
                "answers": [tokenizer.decode(s["input_ids"][learned].tolist(), skip_special_tokens=False)]}
        if s["image"]:
            inputs = tr.pixel_values_of(s["image"], image_processor)
            pixel_cache[s["image"]] = inputs
            layout = mn.anyres_layout(inputs["image_sizes"].tolist())
            block = torch.nonzero(s["input_ids"] == image_token_id).flatten()
            N = int(block.numel())
            assert N == layout["N"] == count(s["image"]) and int(block[-1] - block[0]) + 1 == N
            assert inputs["pixel_values"].shape[0] == layout["patches"]
            with torch.no_grad():
                feats = model.model.get_image_features(pixel_values=inputs["pixel_values"][None],
                                                       image_sizes=inputs["image_sizes"][None],
                                                       return_dict=True).pooler_output
            assert len(feats) == 1 and feats[0].shape[0] == N
            tensors[f"data.{r}.image_features"] = feats[0]
            tensors[f"data.{r}.image_size"] = inputs["image_sizes"]
            r_rows, c_cols = layout["unpadded_feature_grid"]
            meta.update({"image_size": inputs["image_sizes"].tolist(), "N": N, "image_block": [int(block[0]), int(block[-1]) + 1],
                         "best_resolution": layout["best_resolution"], "grid_shape": layout["grid_shape"],
                         "patches": layout["patches"], "unpad": layout["unpad"],
                         "unpadded_feature_grid": layout["unpadded_feature_grid"],
                         "newline_rows_in_block": [layout["base_tokens"] + i * (c_cols + 1) + c_cols
                                                   for i in range(r_rows)]})
        records_meta.append(meta)
        print(f"record {r} id {s['id']}: {meta['length']} tokens, N {meta.get('N')}, "
              f"image size {meta.get('image_size')}, best {meta.get('best_resolution')}, grid {meta.get('grid_shape')}, "
              f"unpadded {meta.get('unpadded_feature_grid')}, {meta['learned_labels']} learned, "
              f"query rows {meta['query_rows']}, block {meta.get('image_block')}")

    # ---------------- one step on records [0, 1, 2] ----------------
    step_samples = [samples[r] for r in STEP_RECORDS]
    batch = tr.collate(step_samples, pad_token_id, image_processor, pixel_cache)
    step_images = [Image.open(s["image"]).convert("RGB") for s in step_samples if s["image"]]
    own = image_processor(images=step_images, return_tensors="pt")
    assert torch.equal(own["pixel_values"], batch["pixel_values"]["pixel_values"])
    assert torch.equal(own["image_sizes"], batch["pixel_values"]["image_sizes"])
    sanity["step_image_inputs_equal_processor_batch"] = True
    sanity["patch_padding_check"] = check_patch_padding(model, image_processor, step_images[0])

    model_loss, _ = tr.forward_model(model, batch)
    model_loss.backward()
    model_grads, _ = tr.gradients(model)
    model.zero_grad(set_to_none=True)

    def step(method, schedule=None):
        model.zero_grad(set_to_none=True)
        with Capture(model) as capture:
            loss, info = tr.forward(model, batch, method, schedule)
            loss.backward()
        grads, missing = tr.gradients(model)
        model.zero_grad(set_to_none=True)
        return loss.detach(), grads, missing, info, capture

    loss_none, grads_none, missing_none, _, cap_none = step("none")
    d = abs(loss_none.item() - model_loss.item())
    assert d <= 1e-6, f"manual none loss differs from the model's by {d}"
    sanity["none_manual_vs_model_loss_abs"] = d
    sanity["none_manual_vs_model_grad_max_abs"] = mt.max_grad_diff(grads_none, model_grads)
    assert sanity["none_manual_vs_model_grad_max_abs"] <= 1e-6
    assert "image_newline" in grads_none

    model.zero_grad(set_to_none=True)
    loss_asm = forward_none_assembled(model, batch)
    loss_asm.backward()
    grads_asm, _ = tr.gradients(model)
    model.zero_grad(set_to_none=True)
    sanity["none_independent_assembly_vs_pack_image_features_loss_abs"] = abs(loss_asm.item() - loss_none.item())
    sanity["none_independent_assembly_vs_pack_image_features_grad_max_abs"] = mt.max_grad_diff(grads_asm, grads_none)
    assert sanity["none_independent_assembly_vs_pack_image_features_grad_max_abs"] <= 1e-6

    loss_pdrop, grads_pdrop, missing_pdrop, info, cap_pdrop = step("pdrop", SCHEDULE)
    assert missing_pdrop == missing_none
    ones = {"layers": SCHEDULE["layers"], "ratios": [1.0, 1.0, 1.0]}
    loss_ones, grads_ones, _, _, _ = step("pdrop", ones)
    sanity["pdrop_ratio1_vs_none_loss_abs"] = abs(loss_ones.item() - loss_none.item())
    sanity["pdrop_ratio1_vs_none_grad_max_abs"] = mt.max_grad_diff(grads_ones, grads_none)
    assert sanity["pdrop_ratio1_vs_none_loss_abs"] <= 1e-6 and sanity["pdrop_ratio1_vs_none_grad_max_abs"] <= 1e-6
    sanity["routing_none"] = routing_checks(model, batch, "none", grads_none, cap_none)
    sanity["routing_pdrop"] = routing_checks(model, batch, "pdrop", grads_pdrop, cap_pdrop)

    zero_in_exact = [k for k in grads_none if k.startswith("vision_tower.") and k.endswith("self_attn.k_proj.bias")]
    differing = {k: ((grads_pdrop[k] - grads_none[k]).abs().max() / grads_none[k].abs().max()).item()
                 for k in grads_none if k not in zero_in_exact}
    same = [k for k, v in differing.items() if v == 0.0]
    assert not same, f"pdrop gradients equal to none for {same}"
    sanity["pdrop_vs_none_every_gradient_differs"] = True
    weakest = min(differing, key=differing.get)
    sanity["pdrop_vs_none_min_relative_grad_diff"] = [weakest, differing[weakest]]
    sanity["clip_k_proj_bias_grads_are_rounding_noise_max_abs"] = max(
        max(grads_none[k].abs().max().item(), grads_pdrop[k].abs().max().item()) for k in zero_in_exact)
    sanity["pdrop_min_kept_boundary_relative_gap"] = min(info["gaps"])
    sanity["pdrop_step_sample_lengths_per_stage"] = info["lengths"]

    for case, loss, grads in (("none", loss_none, grads_none), ("pdrop", loss_pdrop, grads_pdrop)):
        tensors[f"step.{case}.loss"] = loss.view(1).float()
        for name, g in grads.items():
            if name == EMBED:
                rows = torch.nonzero((g != 0).any(dim=1)).flatten()
                tensors[f"step.{case}.grad_rows.{name}"] = rows.to(torch.int64)
                tensors[f"step.{case}.grad.{name}"] = g[rows]
            else:
                tensors[f"step.{case}.grad.{name}"] = g
    rows = tensors[f"step.none.grad_rows.{EMBED}"]
    text_ids = set()
    for s in step_samples:
        ids = s["input_ids"]
        text_ids |= set(ids[ids != image_token_id].tolist())
    sanity["embed_grad_rows_equal_batch_text_ids"] = sorted(text_ids) == rows.tolist()
    sanity["embed_grad_rows_none_equal_pdrop"] = torch.equal(rows, tensors[f"step.pdrop.grad_rows.{EMBED}"])
    assert sanity["embed_grad_rows_equal_batch_text_ids"] and sanity["embed_grad_rows_none_equal_pdrop"]

    kept_newlines = []
    for b, kept_b in enumerate(info["kept"]):
        if kept_b is None:
            kept_newlines.append(None)
            continue
        newline = set(records_meta[STEP_RECORDS[b]]["newline_rows_in_block"])
        N = records_meta[STEP_RECORDS[b]]["N"]
        kept_newlines.append([])
        for s, k in enumerate(kept_b):
            assert k.numel() == int(N * SCHEDULE["ratios"][s]) and bool((k[1:] > k[:-1]).all())
            assert int(k.min()) >= 0 and int(k.max()) < N
            tensors[f"step.pdrop.kept.{b}.{s}"] = k.to(torch.int64)
            if s:
                assert torch.isin(k, kept_b[s - 1]).all()
            kept_newlines[-1].append(sum(int(i) in newline for i in k))
    sanity["pdrop_step_kept_newline_tokens_per_stage"] = kept_newlines
    kept_counts = [[int(k.numel()) for k in kb] if kb is not None else None for kb in info["kept"]]
    print(f"step: loss none {loss_none.item():.8f} (model {model_loss.item():.8f}), pdrop {loss_pdrop.item():.8f}, "
          f"pdrop ratios 1 {loss_ones.item():.8f}; kept counts {kept_counts}, newlines kept {kept_newlines}")

    # ---------------- 10 AdamW steps ----------------
    adamw_runs = {}
    for case in ("none", "pdrop"):
        fresh = tr.load_model(args.model)
        run = tr.train(fresh, samples, case, SCHEDULE if case == "pdrop" else None, ADAMW["steps"],
                       ADAMW["batch_size"], ADAMW["lr"], ADAMW["warmup_steps"], ADAMW["weight_decay"],
                       ADAMW["max_grad_norm"], pad_token_id, image_processor, pixel_cache)
        expected_lr = [tr.cosine_lr(k, ADAMW["lr"], ADAMW["warmup_steps"], ADAMW["steps"])
                       for k in range(ADAMW["steps"])]
        assert max(abs(a - b) for a, b in zip(run["lr"], expected_lr)) < 1e-12, (run["lr"], expected_lr)
        tensors[f"adamw.{case}.losses"] = torch.tensor(run["losses"], dtype=torch.float32)
        tensors[f"adamw.{case}.lr"] = torch.tensor(run["lr"], dtype=torch.float32)
        tensors[f"adamw.{case}.grad_norm"] = torch.tensor(run["grad_norm"], dtype=torch.float32)
        named = {tr.checkpoint_name(n): p for n, p in fresh.named_parameters()}
        for name in FINAL_PARAMETERS:
            tensors[f"adamw.{case}.final.{name}"] = named[name].detach().clone()
        adamw_runs[case] = run
        print(f"adamw {case}: losses {[round(x, 6) for x in run['losses']]}")
        print(f"          grad norms {[round(x, 4) for x in run['grad_norm']]}")
    sanity["adamw_pdrop_min_kept_boundary_relative_gap"] = min(adamw_runs["pdrop"]["gaps"])
    sanity["adamw_lr_matches_closed_form"] = True
    sanity["float64"] = float64_checks(
        args.model, step_samples, samples, pad_token_id, image_processor, info["kept"],
        {"none": (loss_none, grads_none), "pdrop": (loss_pdrop, grads_pdrop)},
        {case: run["losses"] for case, run in adamw_runs.items()}, args.skip_fd)

    metadata = {
        "hyperparameters": json.dumps({"step": {"records": STEP_RECORDS, "batch_size": len(STEP_RECORDS),
                                                "trainable": "all"},
                                       "adamw": dict(ADAMW, trainable="all", records=list(range(len(records))),
                                                     weight_decay_on="parameters with ndim >= 2")}),
        "schedule": json.dumps(dict(SCHEDULE, positions="reindex", N="the whole anyres block (base, unpadded "
                                                                    "grid, image_newline tokens)")),
        "no_grad_parameters": json.dumps(missing_none),
        "records": json.dumps(records_meta),
        "tokens_per_image": json.dumps({m["image"]: m["N"] for m in records_meta if m["image"]}),
        "kept_counts": json.dumps(kept_counts),
        "final_parameters": json.dumps(FINAL_PARAMETERS),
        "pad_token_id": str(pad_token_id), "image_token_id": str(image_token_id),
        "model": "Tests/Fixtures/tiny-llava-next (LlavaNextForConditionalGeneration, fp32 from BF16, eager attention)",
        "data": "Tests/Fixtures/training/data.json + images/ (the data of reference-train.safetensors)",
        "preprocessor": "tiny-llava-next/preprocessor_config.json, LlavaNextImageProcessorPil; token counts of "
                        "LlavaNextProcessor (patch_size 14, default, num_additional_image_tokens 1)",
        "source": "tools/reference/make_next_training_fixtures.py (training_reference.py) on torch "
                  f"{torch.__version__}, transformers {transformers.__version__}; spec docs/TRAINING.md, "
                  "../shared/PYRAMIDDROP.md",
        "sanity": json.dumps(sanity),
    }
    save_reference(out, tensors, metadata)
    for k, v in sanity.items():
        print(f"  sanity {k}: {v}")
    print(f"wrote {out}: {os.path.getsize(out)} bytes, {len(tensors)} tensors ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
