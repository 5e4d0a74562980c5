"""Writes Tests/Fixtures/training/: the golden files of docs/TRAINING.md (training with and without
PyramidDrop) on the tiny random llava-hf checkpoint.

    python tools/reference/make_training_fixtures.py [--model DIR] [--out DIR] [--skip-fd]

  images/chelsea.jpg     copy of Tests/Fixtures/images/chelsea.jpg (451x300)
  images/coffee.jpg      scikit-image's coffee, 200x133, JPEG quality 90
  images/astronaut.png   scikit-image's astronaut, 128x128, PNG
  data.json              4 records in LLaVA's format (one multi-turn, one text-only)
  reference-train.safetensors  the tensors listed in tools/reference/README.md

Reads (never writes) Tests/Fixtures/tiny-llava and Tests/Fixtures/images/chelsea.jpg, so it runs
after make_llava_fixtures.py. The semantics are those of training_reference.py.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

import torch
import tokenizers
from PIL import Image
from skimage import data as skimage_data

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import training_reference as tr  # noqa: E402
from common import FIXTURES, save_reference  # noqa: E402

DEFAULT_MODEL = os.path.normpath(os.path.join(FIXTURES, "tiny-llava"))
DEFAULT_OUT = os.path.normpath(os.path.join(FIXTURES, "training"))
SCHEDULE = {"layers": [2, 4, 6], "ratios": [0.5, 0.25, 0.125]}
STEP_RECORDS = [0, 1, 2]
ADAMW = {"steps": 10, "batch_size": 2, "lr": 2e-3, "warmup_steps": 3, "weight_decay": 0.1,
         "max_grad_norm": 1.0, "betas": [0.9, 0.999], "eps": 1e-8, "schedule": "cosine",
         "order": "file order, wrapping around: [0,1], [2,3], [0,1], ..."}
EMBED = "language_model.model.embed_tokens.weight"
# Small parameters whose values after the 10 AdamW steps are stored too (debugging aid).
FINAL_PARAMETERS = ["multi_modal_projector.linear_2.bias", "vision_tower.vision_model.embeddings.class_embedding",
                    "language_model.model.layers.7.self_attn.q_proj.weight", "language_model.model.norm.weight"]
# Scalars of the float64 finite-difference check (lm_head.weight[first learned label, 1] is added).
FD_PICKS = [("model.multi_modal_projector.linear_1.weight", (3, 5)),
            ("model.language_model.layers.3.self_attn.q_proj.weight", (1, 2)),
            ("model.language_model.layers.0.mlp.down_proj.weight", (4, 7)),
            ("model.vision_tower.encoder.layers.0.mlp.fc1.weight", (0, 0)),
            ("model.vision_tower.embeddings.class_embedding", (6,)),
            ("model.vision_tower.embeddings.patch_embedding.weight", (2, 1, 3, 4))]

RECORDS = [
    {"id": "chelsea-1", "image": "chelsea.jpg",
     "conversations": [{"from": "human", "value": "<image>\nWhat animal is in the picture?"},
                       {"from": "gpt", "value": "A tabby cat looking at the camera."}]},
    {"id": 2, "image": "coffee.jpg",
     "conversations": [{"from": "human", "value": "What is in the cup?\n<image>"},
                       {"from": "gpt", "value": "A cup of coffee with latte art."},
                       {"from": "human", "value": "What is the cup standing on?"},
                       {"from": "gpt", "value": "A white saucer with a spoon."}]},
    {"id": "text-only",
     "conversations": [{"from": "human", "value": "What is the capital of France?"},
                       {"from": "gpt", "value": "The capital of France is Paris."}]},
    {"id": "astronaut-1", "image": "astronaut.png",
     "conversations": [{"from": "human", "value": "<image>\nWho is in this photo?"},
                       {"from": "gpt", "value": "An astronaut in a white spacesuit."}]},
]


# --------------------------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------------------------

def write_data(out):
    images = os.path.join(out, "images")
    os.makedirs(images, exist_ok=True)
    shutil.copyfile(os.path.join(FIXTURES, "images", "chelsea.jpg"), os.path.join(images, "chelsea.jpg"))
    Image.fromarray(skimage_data.coffee()).resize((200, 133), Image.Resampling.LANCZOS).save(
        os.path.join(images, "coffee.jpg"), quality=90)
    Image.fromarray(skimage_data.astronaut()).resize((128, 128), Image.Resampling.LANCZOS).save(
        os.path.join(images, "astronaut.png"))
    with open(os.path.join(out, "data.json"), "w") as f:
        json.dump(RECORDS, f, indent=2)
        f.write("\n")
    return images


def check_bad_records(images, tokenizer):
    """Every bad-record kind of TRAINING.md §1 raises BadRecord naming index and id."""
    good = RECORDS[0]
    turns = good["conversations"]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(os.path.join(images, "chelsea.jpg"), os.path.join(tmp, "chelsea.jpg"))
        with open(os.path.join(tmp, "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 not a jpeg")
        bad = {
            "not an object": ["x"],
            "no conversations": {"id": "a", "image": "chelsea.jpg"},
            "empty conversations": {"id": "a", "image": "chelsea.jpg", "conversations": []},
            "starts with gpt": {"id": "a", "conversations": [turns[1], {"from": "human", "value": "Hi"}]},
            "two humans": {"id": "a", "conversations": [{"from": "human", "value": "Hi"}, turns[0], turns[1]]},
            "unknown role": {"id": "a", "conversations": [{"from": "system", "value": "x"}, turns[1]]},
            "value not a string": {"id": "a", "conversations": [{"from": "human", "value": 3}, turns[1]]},
            "no gpt turn": {"id": "a", "conversations": [{"from": "human", "value": "Hi"}]},
            "missing image": dict(good, image="nothere.jpg"),
            "image does not decode": dict(good, image="broken.jpg"),
            "two <image>": dict(good, conversations=[{"from": "human", "value": "<image>\n<image>\nHi"}, turns[1]]),
            "no <image> with an image": dict(good, conversations=[{"from": "human", "value": "Hi"}, turns[1]]),
            "<image> without an image": {"id": 7, "conversations": turns},
            "<image> in a gpt turn": dict(good, conversations=[{"from": "human", "value": "Hi"},
                                                               {"from": "gpt", "value": "<image>"}]),
            "longer than the context": {"id": "a", "conversations": [{"from": "human", "value": "word " * 5000},
                                                                     turns[1]]},
        }
        for kind, record in bad.items():
            try:
                tr.build_sample(record, tmp, tokenizer, index=5)
            except tr.BadRecord as error:
                assert error.index == 5
                continue
            raise AssertionError(f"bad record ({kind}) was accepted")
    return len(bad)


# --------------------------------------------------------------------------------------------
# Shared with make_next_training_fixtures.py: arguments, data tensors, the step, AdamW, float64
# checks, metadata. Tensor names and sanity keys are those of tools/reference/README.md.
# --------------------------------------------------------------------------------------------

def parse_args(doc, default_model, default_out, out_help=None, default_data=None):
    """--model DIR, [--data DIR (when default_data is given),] --out, --skip-fd."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--model", default=default_model)
    if default_data is not None:
        parser.add_argument("--data", default=default_data, help="folder with data.json and images/")
    parser.add_argument("--out", default=default_out, help=out_help)
    parser.add_argument("--skip-fd", action="store_true", help="skip the float64 finite differences (slow part)")
    return parser.parse_args()


def build_samples(records, images, tokenizer, image_token_id, num_image_tokens, max_length):
    return [tr.build_sample(r, images, tokenizer, index=i, image_token_id=image_token_id,
                            num_image_tokens=num_image_tokens, max_length=max_length) for i, r in enumerate(records)]


def record_sample(tensors, r, sample, tokenizer):
    """data.{r}.input_ids / labels into tensors; returns the record's metadata (id, image file,
    length, learned labels, query rows, decoded answers), to which the image's entries are added."""
    tensors[f"data.{r}.input_ids"] = sample["input_ids"]
    tensors[f"data.{r}.labels"] = sample["labels"]
    learned = sample["labels"] != tr.IGNORE
    return {"id": sample["id"], "image": os.path.basename(sample["image"]) if sample["image"] else None,
            "length": int(sample["input_ids"].shape[0]), "learned_labels": int(learned.sum()),
            "query_rows": tr.query_rows_of(sample["labels"]),
            "answers": [tokenizer.decode(sample["input_ids"][learned].tolist(), skip_special_tokens=False)]}


class Step:
    """One step's result: loss (detached), grads {checkpoint name: grad}, missing (no gradient),
    info (forward_pdrop's, None for none), captured (what the capture context gave, or None)."""

    def __init__(self, loss, grads, missing, info, captured):
        self.loss, self.grads, self.missing, self.info, self.captured = loss, grads, missing, info, captured


def step_gradients(model, batch, method, schedule=None, capture=contextlib.nullcontext):
    """Loss and gradients of one forward/backward; `capture()` is a context manager around the
    forward and backward (LLaVA-NeXT keeps intermediate gradients with it)."""
    model.zero_grad(set_to_none=True)
    with capture() as captured:
        loss, info = tr.forward(model, batch, method, schedule)
        loss.backward()
    grads, missing = tr.gradients(model)
    model.zero_grad(set_to_none=True)
    return Step(loss.detach(), grads, missing, info, captured)


def max_grad_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def none_step(model, batch, sanity, capture=contextlib.nullcontext):
    """The model's own forward and backward with labels, then method none: loss and every gradient
    asserted equal (1e-6). Returns (the model's loss, none's Step)."""
    model_loss, _ = tr.forward_model(model, batch)
    model_loss.backward()
    model_grads, _ = tr.gradients(model)
    model.zero_grad(set_to_none=True)

    none = step_gradients(model, batch, "none", capture=capture)
    d = abs(none.loss.item() - model_loss.item())
    assert d <= 1e-6, f"manual none loss differs from the model's by {d}"
    sanity["none_manual_vs_model_loss_abs"] = d
    sanity["none_manual_vs_model_grad_max_abs"] = max_grad_diff(none.grads, model_grads)
    assert sanity["none_manual_vs_model_grad_max_abs"] <= 1e-6
    return model_loss, none


def pdrop_steps(model, batch, none, sanity, capture=contextlib.nullcontext):
    """Method pdrop with SCHEDULE, and with every ratio 1 (asserted equal to none, 1e-6).
    Returns (pdrop's Step, ratio-1's Step)."""
    pdrop = step_gradients(model, batch, "pdrop", SCHEDULE, capture=capture)
    assert pdrop.missing == none.missing
    ones = step_gradients(model, batch, "pdrop", {"layers": SCHEDULE["layers"], "ratios": [1.0, 1.0, 1.0]},
                          capture=capture)
    sanity["pdrop_ratio1_vs_none_loss_abs"] = abs(ones.loss.item() - none.loss.item())
    sanity["pdrop_ratio1_vs_none_grad_max_abs"] = max_grad_diff(ones.grads, none.grads)
    assert sanity["pdrop_ratio1_vs_none_loss_abs"] <= 1e-6 and sanity["pdrop_ratio1_vs_none_grad_max_abs"] <= 1e-6
    return pdrop, ones


def check_pdrop_vs_none(none, pdrop, sanity):
    """Every gradient changes with dropping. CLIP's k_proj biases are the exception in exact
    arithmetic (a key bias adds the same q.b to every logit of a query row: softmax ignores it),
    so their stored gradients are fp32 rounding noise (~1e-9) in both cases."""
    grads_none, grads_pdrop = none.grads, pdrop.grads
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
    sanity["pdrop_min_kept_boundary_relative_gap"] = min(pdrop.info["gaps"])
    sanity["pdrop_step_sample_lengths_per_stage"] = pdrop.info["lengths"]


def record_step(tensors, case, step):
    """step.{case}.loss and step.{case}.grad.{name}; the embedding's gradient as its nonzero rows
    only (step.{case}.grad_rows.{EMBED}: their ids, step.{case}.grad.{EMBED}: the rows)."""
    tensors[f"step.{case}.loss"] = step.loss.view(1).float()
    for name, g in step.grads.items():
        if name == EMBED:
            rows = torch.nonzero((g != 0).any(dim=1)).flatten()
            tensors[f"step.{case}.grad_rows.{name}"] = rows.to(torch.int64)
            tensors[f"step.{case}.grad.{name}"] = g[rows]
        else:
            tensors[f"step.{case}.grad.{name}"] = g


def check_embed_rows(tensors, step_samples, image_token_id, sanity):
    """The embedding rows with a gradient: the text tokens of the batch (not the image token, nor
    padding), the same for none and pdrop. Returns the batch's text ids without a gradient row."""
    rows = tensors[f"step.none.grad_rows.{EMBED}"]
    text_ids = set()
    for s in step_samples:
        ids = s["input_ids"]
        text_ids |= set(ids[ids != image_token_id].tolist())
    sanity["embed_grad_rows_equal_batch_text_ids"] = sorted(text_ids) == rows.tolist()
    sanity["embed_grad_rows_none_equal_pdrop"] = torch.equal(rows, tensors[f"step.pdrop.grad_rows.{EMBED}"])
    return sorted(text_ids - set(rows.tolist()))


def record_kept(tensors, kept):
    """step.pdrop.kept.{b}.{s}: the kept original image indices of sample b after stage s, each
    stage's a subset of the one before."""
    for b, kept_b in enumerate(kept):
        if kept_b is None:
            continue
        for s, k in enumerate(kept_b):
            tensors[f"step.pdrop.kept.{b}.{s}"] = k.to(torch.int64)
            if s:
                assert torch.isin(k, kept_b[s - 1]).all()


def kept_counts(kept):
    return [[int(k.numel()) for k in kb] if kb is not None else None for kb in kept]


def step_summary(model_loss, none, pdrop, ones):
    return (f"step: loss none {none.loss.item():.8f} (model {model_loss.item():.8f}), pdrop {pdrop.loss.item():.8f}, "
            f"pdrop ratios 1 {ones.loss.item():.8f}; kept counts {kept_counts(pdrop.info['kept'])}")


def adamw_runs(model_dir, samples, pad_token_id, image_processor, pixel_cache, final_parameters, tensors, sanity):
    """The 10 AdamW steps (ADAMW) from a fresh model, none and pdrop: adamw.{case}.losses / lr /
    grad_norm and adamw.{case}.final.{name} of final_parameters; the lr asserted equal to the
    closed form. Returns {case: tr.train's run}."""
    runs = {}
    for case in ("none", "pdrop"):
        fresh = tr.load_model(model_dir)
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
        for name in final_parameters:
            tensors[f"adamw.{case}.final.{name}"] = named[name].detach().clone()
        runs[case] = run
        print(f"adamw {case}: losses {[round(x, 6) for x in run['losses']]}")
        print(f"          grad norms {[round(x, 4) for x in run['grad_norm']]}")
    sanity["adamw_pdrop_min_kept_boundary_relative_gap"] = min(runs["pdrop"]["gaps"])
    sanity["adamw_lr_matches_closed_form"] = True
    return runs


class Float64Everywhere:
    """transformers computes softmax (LLaMA and CLIP eager attention) and RMSNorm in fp32 whatever
    the input dtype; for the finite-difference check those stay in fp64 here."""

    def __enter__(self):
        from transformers.models.llama import modeling_llama
        self.softmax, self.rms = torch.nn.functional.softmax, modeling_llama.LlamaRMSNorm.forward
        original_softmax, original_rms = self.softmax, self.rms

        def softmax(x, dim=None, _stacklevel=3, dtype=None):
            if x.dtype == torch.float64 and dtype == torch.float32:
                dtype = torch.float64
            return original_softmax(x, dim=dim, dtype=dtype)

        def rms(module, hidden):
            if hidden.dtype != torch.float64:
                return original_rms(module, hidden)
            variance = hidden.pow(2).mean(-1, keepdim=True)
            return module.weight * (hidden * torch.rsqrt(variance + module.variance_epsilon))

        torch.nn.functional.softmax, modeling_llama.LlamaRMSNorm.forward = softmax, rms
        return self

    def __exit__(self, *exc):
        from transformers.models.llama import modeling_llama
        torch.nn.functional.softmax, modeling_llama.LlamaRMSNorm.forward = self.softmax, self.rms
        return False


def float64_checks(model_dir, samples, all_samples, pad_token_id, image_processor, none, pdrop, runs, skip_fd,
                   fd_picks):
    """In float64 (Float64Everywhere): (1) the step's loss and every gradient vs the fp32 golden
    ones (the Steps none and pdrop), and the 10 AdamW losses vs the fp32 ones (runs): how close an exact fp32 implementation can be
    expected to come; (2) unless skip_fd, central differences (eps 1e-6) vs autograd for the scalar
    parameters fd_picks (and lm_head): |autograd - numeric| / max(|numeric|, 1e-3) must stay below 1e-5.
    pdrop runs with the fp32 kept sets forced; the natural fp64 ranking is checked to pick the same
    sets (unperturbed and at every perturbation)."""
    kept, fp32 = pdrop.info["kept"], {"none": (none.loss, none.grads), "pdrop": (pdrop.loss, pdrop.grads)}
    report = {}
    with Float64Everywhere():
        model = tr.load_model(model_dir, dtype=torch.float64)
        batch = tr.collate(samples, pad_token_id, image_processor)
        batch["pixel_values"] = tr.double_image_inputs(batch["pixel_values"])
        for method in ("none", "pdrop"):
            model.zero_grad(set_to_none=True)
            if method == "none":
                loss = tr.forward_none(model, batch)[0]
            else:
                loss, natural = tr.forward_pdrop(model, batch, SCHEDULE["layers"], SCHEDULE["ratios"])
                assert same_kept(kept, natural["kept"]), "fp64 ranking keeps other tokens than fp32"
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
                report[f"{method}_finite_difference_max_error"] = finite_difference(
                    model, batch, method, kept, fd_picks)
        for method in ("none", "pdrop"):
            fresh = tr.load_model(model_dir, dtype=torch.float64)
            cache = {}
            for s in all_samples:
                if s["image"] and s["image"] not in cache:
                    cache[s["image"]] = tr.double_image_inputs(tr.pixel_values_of(s["image"], image_processor))
            run = tr.train(fresh, all_samples, method, SCHEDULE if method == "pdrop" else None, ADAMW["steps"],
                           ADAMW["batch_size"], ADAMW["lr"], ADAMW["warmup_steps"], ADAMW["weight_decay"],
                           ADAMW["max_grad_norm"], pad_token_id, image_processor, cache)
            report[f"{method}_adamw_losses_max_abs"] = max(abs(a - b) for a, b in zip(run["losses"],
                                                                                       runs[method]["losses"]))
            print(f"  fp64 adamw {method}: losses {[round(x, 6) for x in run['losses']]}")
    return report


def same_kept(a, b):
    return all((x is None and y is None) or all(torch.equal(p, q) for p, q in zip(x, y)) for x, y in zip(a, b))


def finite_difference(model, batch, method, kept, picks, eps=1e-6):
    """Central differences at picks [(parameter name, index)] and at lm_head.weight[first learned
    label of sample 0, 1]."""
    params = dict(model.named_parameters())
    label = int(batch["labels"][0][batch["labels"][0] >= 0][0])
    picks = list(picks) + [("lm_head.weight", (label, 1))]

    def loss_at():
        if method == "none":
            return tr.forward_none(model, batch)[0].item()
        loss, _ = tr.forward_pdrop(model, batch, SCHEDULE["layers"], SCHEDULE["ratios"], force_kept=kept)
        _, natural = tr.forward_pdrop(model, batch, SCHEDULE["layers"], SCHEDULE["ratios"])
        assert same_kept(kept, natural["kept"]), "the ranking changed under a 1e-6 perturbation"
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
        error = abs(analytic - numeric) / max(abs(numeric), 1e-3)    # small gradients: absolute
        worst = max(worst, error)
        print(f"    fd {method} {tr.checkpoint_name(name)}{list(index)}: autograd {analytic:.10e} "
              f"numeric {numeric:.10e} err {error:.1e}")
    assert worst < 1e-5, f"finite differences disagree ({method}): {worst}"
    return worst


def training_metadata(schedule, n_records, none, pdrop, records_meta, final_parameters, pad_token_id,
                      image_token_id):
    """The metadata entries both training references have; each adds its own (model, source, ...)
    and then sanity."""
    return {
        "hyperparameters": json.dumps({"step": {"records": STEP_RECORDS, "batch_size": len(STEP_RECORDS),
                                                "trainable": "all"},
                                       "adamw": dict(ADAMW, trainable="all", records=list(range(n_records)),
                                                     weight_decay_on="parameters with ndim >= 2")}),
        "schedule": json.dumps(schedule),
        "no_grad_parameters": json.dumps(none.missing),
        "records": json.dumps(records_meta),
        "kept_counts": json.dumps(kept_counts(pdrop.info["kept"])),
        "final_parameters": json.dumps(final_parameters),
        "pad_token_id": str(pad_token_id), "image_token_id": str(image_token_id),
    }


def write_reference(path, tensors, metadata, sanity, started):
    save_reference(path, tensors, metadata)
    for k, v in sanity.items():
        print(f"  sanity {k}: {v}")
    print(f"wrote {path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors ({time.time() - started:.0f} s)")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def main():
    args = parse_args(__doc__, DEFAULT_MODEL, DEFAULT_OUT)
    torch.manual_seed(0)
    started = time.time()

    images = write_data(args.out)
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    image_processor = tr.image_processor_from(args.model)
    model = tr.load_model(args.model)
    config = model.config
    pad_token_id, image_token_id = config.pad_token_id, config.image_token_id
    n_image = tr.tokens_per_image(model)
    max_length = config.text_config.max_position_embeddings

    tensors, sanity = {}, {}
    sanity["bad_record_kinds_rejected"] = check_bad_records(images, tokenizer)

    # ---------------- data ----------------
    samples = build_samples(RECORDS, images, tokenizer, image_token_id, n_image, max_length)
    records_meta = []
    pixel_cache = {}
    for r, s in enumerate(samples):
        meta = record_sample(tensors, r, s, tokenizer)
        if s["image"]:
            pv = tr.pixel_values_of(s["image"], image_processor)
            pixel_cache[s["image"]] = pv
            with torch.no_grad():
                feats = model.model.get_image_features(pixel_values=pv[None], return_dict=True).pooler_output
            tensors[f"data.{r}.image_features"] = torch.cat(list(feats), dim=0)
            block = torch.nonzero(s["input_ids"] == image_token_id).flatten()
            meta["image_block"] = [int(block[0]), int(block[-1]) + 1]
        records_meta.append(meta)
        print(f"record {r} id {s['id']}: {meta['length']} tokens, {meta['learned_labels']} learned labels, "
              f"query rows {meta['query_rows']}, image block {meta.get('image_block')}")

    # ---------------- one step on records [0, 1, 2] ----------------
    step_samples = [samples[r] for r in STEP_RECORDS]
    batch = tr.collate(step_samples, pad_token_id, image_processor, pixel_cache)
    model_loss, none = none_step(model, batch, sanity)
    pdrop, ones = pdrop_steps(model, batch, none, sanity)
    check_pdrop_vs_none(none, pdrop, sanity)
    for case, step in (("none", none), ("pdrop", pdrop)):
        record_step(tensors, case, step)
    sanity["embed_grad_rows_missing_from_batch_text_ids"] = check_embed_rows(tensors, step_samples, image_token_id,
                                                                             sanity)
    record_kept(tensors, pdrop.info["kept"])
    print(step_summary(model_loss, none, pdrop, ones))

    # ---------------- 10 AdamW steps ----------------
    runs = adamw_runs(args.model, samples, pad_token_id, image_processor, pixel_cache, FINAL_PARAMETERS, tensors,
                      sanity)
    sanity["float64"] = float64_checks(args.model, step_samples, samples, pad_token_id, image_processor, none, pdrop,
                                       runs, args.skip_fd, FD_PICKS)

    metadata = training_metadata(SCHEDULE, len(RECORDS), none, pdrop, records_meta, FINAL_PARAMETERS,
                                 pad_token_id, image_token_id)
    metadata.update({
        "tokens_per_image": str(n_image),
        "model": "Tests/Fixtures/tiny-llava (fp32 from BF16, eager attention)",
        "source": "tools/reference/make_training_fixtures.py (training_reference.py) on torch "
                  f"{torch.__version__}, transformers {__import__('transformers').__version__}; spec docs/TRAINING.md",
        "sanity": json.dumps(sanity),
    })
    write_reference(os.path.join(args.out, "reference-train.safetensors"), tensors, metadata, sanity, started)


if __name__ == "__main__":
    main()
