"""Writes Tests/Fixtures/training/reference-train-next.safetensors: the training golden file of
docs/TRAINING.md (with and without PyramidDrop) for LLaVA-NeXT, on the tiny random checkpoint
Tests/Fixtures/tiny-llava-next and the SAME data as reference-train.safetensors
(Tests/Fixtures/training/data.json + images/).

    python tools/reference/make_next_training_fixtures.py [--model DIR] [--data DIR] [--out FILE] [--skip-fd]

The step, AdamW, float64 and finite-difference checks, tensor names, metadata and arguments are
make_training_fixtures.py's (its shared helpers); this script adds what is NeXT's.
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
from common import FIXTURES  # noqa: E402

DEFAULT_MODEL = os.path.normpath(os.path.join(FIXTURES, "tiny-llava-next"))
DEFAULT_DATA = os.path.normpath(os.path.join(FIXTURES, "training"))
OUT_NAME = "reference-train-next.safetensors"
SCHEDULE = mt.SCHEDULE            # layers [2, 4, 6], ratios [0.5, 0.25, 0.125], reindex
STEP_RECORDS = mt.STEP_RECORDS    # [0, 1, 2]
ADAMW = mt.ADAMW                  # 10 steps, batch 2, lr 2e-3, warmup 3, cosine, wd 0.1 (ndim >= 2), clip 1.0
FINAL_PARAMETERS = ["image_newline", "multi_modal_projector.linear_2.bias",
                    "vision_tower.vision_model.embeddings.class_embedding",
                    "language_model.model.layers.7.self_attn.q_proj.weight", "language_model.model.norm.weight"]
# Scalars of the float64 finite differences, image_newline among them (mt.finite_difference adds
# lm_head.weight[first learned label, 1]).
FD_PICKS = [("model.image_newline", (5,)),
            ("model.image_newline", (17,)),
            ("model.multi_modal_projector.linear_1.weight", (3, 5)),
            ("model.language_model.layers.3.self_attn.q_proj.weight", (1, 2)),
            ("model.vision_tower.encoder.layers.0.mlp.fc1.weight", (0, 0)),
            ("model.vision_tower.embeddings.class_embedding", (6,)),
            ("model.vision_tower.embeddings.patch_embedding.weight", (2, 1, 3, 4))]


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


def check_kept(kept, records_meta):
    """The kept indices of a dropped sample at stage s: int(N * ratio_s) of them, increasing, in
    0..N-1 (N the whole anyres block). Returns, per sample and stage, how many newline tokens are kept."""
    kept_newlines = []
    for b, kept_b in enumerate(kept):
        if kept_b is None:
            kept_newlines.append(None)
            continue
        newline = set(records_meta[STEP_RECORDS[b]]["newline_rows_in_block"])
        N = records_meta[STEP_RECORDS[b]]["N"]
        kept_newlines.append([])
        for s, k in enumerate(kept_b):
            assert k.numel() == int(N * SCHEDULE["ratios"][s]) and bool((k[1:] > k[:-1]).all())
            assert int(k.min()) >= 0 and int(k.max()) < N
            kept_newlines[-1].append(sum(int(i) in newline for i in k))
    return kept_newlines


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def main():
    args = mt.parse_args(__doc__, DEFAULT_MODEL, None, out_help=f"output file (default DATA/{OUT_NAME})",
                         default_data=DEFAULT_DATA)
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
    samples = mt.build_samples(records, images, tokenizer, image_token_id, count, max_length)
    records_meta, pixel_cache = [], {}
    for r, s in enumerate(samples):
        check_processor_ids(processor, records[r], s)
        meta = mt.record_sample(tensors, r, s, tokenizer)
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

    capture = lambda: Capture(model)  # noqa: E731
    model_loss, none = mt.none_step(model, batch, sanity, capture)
    assert "image_newline" in none.grads

    model.zero_grad(set_to_none=True)
    loss_asm = forward_none_assembled(model, batch)
    loss_asm.backward()
    grads_asm, _ = tr.gradients(model)
    model.zero_grad(set_to_none=True)
    sanity["none_independent_assembly_vs_pack_image_features_loss_abs"] = abs(loss_asm.item() - none.loss.item())
    sanity["none_independent_assembly_vs_pack_image_features_grad_max_abs"] = mt.max_grad_diff(grads_asm, none.grads)
    assert sanity["none_independent_assembly_vs_pack_image_features_grad_max_abs"] <= 1e-6

    pdrop, ones = mt.pdrop_steps(model, batch, none, sanity, capture)
    sanity["routing_none"] = routing_checks(model, batch, "none", none.grads, none.captured)
    sanity["routing_pdrop"] = routing_checks(model, batch, "pdrop", pdrop.grads, pdrop.captured)
    mt.check_pdrop_vs_none(none, pdrop, sanity)

    for case, step in (("none", none), ("pdrop", pdrop)):
        mt.record_step(tensors, case, step)
    mt.check_embed_rows(tensors, step_samples, image_token_id, sanity)
    assert sanity["embed_grad_rows_equal_batch_text_ids"] and sanity["embed_grad_rows_none_equal_pdrop"]

    mt.record_kept(tensors, pdrop.info["kept"])
    sanity["pdrop_step_kept_newline_tokens_per_stage"] = check_kept(pdrop.info["kept"], records_meta)
    print(f"{mt.step_summary(model_loss, none, pdrop, ones)}, "
          f"newlines kept {sanity['pdrop_step_kept_newline_tokens_per_stage']}")

    # ---------------- 10 AdamW steps ----------------
    runs = mt.adamw_runs(args.model, samples, pad_token_id, image_processor, pixel_cache, FINAL_PARAMETERS, tensors,
                         sanity)
    sanity["float64"] = mt.float64_checks(args.model, step_samples, samples, pad_token_id, image_processor, none,
                                          pdrop, runs, args.skip_fd, FD_PICKS)

    metadata = mt.training_metadata(dict(SCHEDULE, positions="reindex", N="the whole anyres block (base, unpadded "
                                                                          "grid, image_newline tokens)"),
                                    len(records), none, pdrop, records_meta, FINAL_PARAMETERS,
                                    pad_token_id, image_token_id)
    metadata.update({
        "tokens_per_image": json.dumps({m["image"]: m["N"] for m in records_meta if m["image"]}),
        "model": "Tests/Fixtures/tiny-llava-next (LlavaNextForConditionalGeneration, fp32 from BF16, eager attention)",
        "data": "Tests/Fixtures/training/data.json + images/ (the data of reference-train.safetensors)",
        "preprocessor": "tiny-llava-next/preprocessor_config.json, LlavaNextImageProcessorPil; token counts of "
                        "LlavaNextProcessor (patch_size 14, default, num_additional_image_tokens 1)",
        "source": "tools/reference/make_next_training_fixtures.py (training_reference.py) on torch "
                  f"{torch.__version__}, transformers {transformers.__version__}; spec docs/TRAINING.md, "
                  "../shared/PYRAMIDDROP.md",
        "sanity": json.dumps(sanity),
    })
    mt.write_reference(out, tensors, metadata, sanity, started)


if __name__ == "__main__":
    main()
