"""Training with and without PyramidDrop on LLaVA: the PyTorch reference of docs/TRAINING.md.

Everything runs in fp32 (or fp64 for finite-difference checks) on transformers' own modules:

  * data (TRAINING.md §1-2): `build_sample` turns a LLaVA-format record into input_ids with the
    single <image> expanded to 576 image-token ids, labels by the prefix rule (-100 outside the
    answer spans), and the image path; bad records raise `BadRecord` with index, id and reason;
  * batches (§3): right padding with the config's pad_token_id, label -100, attention mask 0;
  * forward + loss, method "none": the model's own forward with labels, and the same computed
    layer by layer here (`forward_none`), asserted equal;
  * forward + loss, method "pdrop" (§4, ../shared/PYRAMIDDROP.md §2-3): the decoder layers one by
    one on the right-padded batch; after 1-based layer l_s each sample that has an image and at
    least one answer span is ranked on its own (no gradient) and its hidden states and labels are
    gathered to the kept tokens (index_select: gradients reach the kept rows only); the batch is
    re-padded on the right and positions re-indexed 0..len-1;
  * optimizer (§5): torch.optim.AdamW with two parameter groups, clip_grad_norm_, and
    get_cosine_schedule_with_warmup.

LLaVA-NeXT (LlavaNextForConditionalGeneration, make_next_training_fixtures.py) uses the same
functions: `build_sample` takes the image-token count per image (a callable), the image processor
may be a LlavaNextImageProcessor (then a sample's image inputs are {"pixel_values" (patches, 3, crop,
crop), "image_sizes" (2,)} and a batch's are padded to the most patches, as the processor batches
them), and `checkpoint_name` knows `image_newline`.

Names: "sample" = one record of a batch; N = 576, the original image tokens of a sample (for
LLaVA-NeXT: the whole anyres block of its image, newline tokens included);
"kept index" = index of an image token in its ORIGINAL block, 0..N-1.
"""
import json
import math
import os
import sys

import torch
from PIL import Image
from transformers import (CLIPImageProcessor, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration,
                          get_cosine_schedule_with_warmup)
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pdrop_reference as pref  # noqa: E402

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
IMAGE_TOKEN = "<image>"
IGNORE = -100
ROLES = ("human", "gpt")
TAGS = {"human": "USER", "gpt": "ASSISTANT"}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def load_model(directory, dtype=torch.float32):
    """The checkpoint in fp32 (BF16 -> fp32 is exact), eager attention, as the inference reference.
    LlavaForConditionalGeneration, or LlavaNextForConditionalGeneration when config.json's
    model_type is "llava_next"."""
    with open(os.path.join(directory, "config.json")) as f:
        model_type = json.load(f).get("model_type")
    model_class = LlavaNextForConditionalGeneration if model_type == "llava_next" else LlavaForConditionalGeneration
    model = pref.load_model(directory, model_class)
    if dtype != torch.float32:
        model = model.to(dtype)
    return model


def image_processor_from(directory):
    """CLIPImageProcessor from the checkpoint's preprocessor_config.json, as make_llava_fixtures.py
    builds it (the two class-name keys dropped). When image_processor_type is
    LlavaNextImageProcessor: LlavaNextImageProcessorPil (the PIL backend), as
    make_llava_next_fixtures.py builds it (also "aspect_ratio_setting" dropped, not an argument)."""
    with open(os.path.join(directory, "preprocessor_config.json")) as f:
        config = json.load(f)
    if config.get("image_processor_type") == "LlavaNextImageProcessor":
        return LlavaNextImageProcessorPil(**{k: v for k, v in config.items() if k not in (
            "image_processor_type", "processor_class", "aspect_ratio_setting")})
    return CLIPImageProcessor(**{k: v for k, v in config.items()
                                 if k not in ("image_processor_type", "processor_class")})


def checkpoint_name(module_name):
    """transformers 5's parameter name -> the llava-hf checkpoint's tensor name."""
    for prefix, replacement in (("model.language_model.", "language_model.model."),
                                ("lm_head.", "language_model.lm_head."),
                                ("model.vision_tower.", "vision_tower.vision_model."),
                                ("model.multi_modal_projector.", "multi_modal_projector."),
                                ("model.image_newline", "image_newline")):          # LLaVA-NeXT
        if module_name.startswith(prefix):
            return replacement + module_name[len(prefix):]
    raise ValueError(f"no checkpoint name for parameter {module_name}")


def tokens_per_image(model):
    """576 for LLaVA-1.5: (image_size / patch_size)^2 patches, CLS dropped ("default" strategy)."""
    vision = model.config.vision_config
    assert model.config.vision_feature_select_strategy == "default"
    return (vision.image_size // vision.patch_size) ** 2


# --------------------------------------------------------------------------------------------
# Data (TRAINING.md §1-2)
# --------------------------------------------------------------------------------------------

class BadRecord(ValueError):
    def __init__(self, index, record_id, reason):
        self.index, self.record_id, self.reason = index, record_id, reason
        super().__init__(f"record {index} (id {record_id}): {reason}")


def record_id_text(record):
    """The id as text ("?" when there is none): ids may be strings or numbers."""
    if isinstance(record, dict) and "id" in record:
        value = record["id"]
        return value if isinstance(value, str) else json.dumps(value)
    return "?"


def render(conversations):
    """The Vicuna v1 text and, per answer k, (a_k, e_k): the character offsets right after its
    "ASSISTANT:" and right after its "</s>".
    A trailing human turn (no answer) is rendered as LLaVA's conv_vicuna_v1 does ("USER: h ")."""
    text = SYSTEM + " "
    spans = []
    for turn in conversations:
        if turn["from"] == "human":
            text += "USER: " + turn["value"] + " "
        else:
            text += "ASSISTANT:"
            a = len(text)
            text += " " + turn["value"] + "</s>"
            spans.append((a, len(text)))
    return text, spans


def check_conversations(record):
    """The structural rules of §1; returns the reason a record is bad, or None."""
    if not isinstance(record, dict):
        return "not an object"
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        return "no or empty conversations"
    for t, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            return f"turn {t} is not an object"
        role = turn.get("from")
        if role not in ROLES:
            return f"turn {t}: from {role!r} is not human/gpt"
        if not isinstance(turn.get("value"), str):
            return f"turn {t}: value is not a string"
        if role != ROLES[t % 2]:
            return f"turn {t}: roles out of order (expected {ROLES[t % 2]}, got {role})"
    if not any(turn["from"] == "gpt" for turn in conversations):
        return "no gpt turn"
    return None


def build_sample(record, images_dir, tokenizer, index=0, image_token_id=32000, num_image_tokens=576,
                 max_length=4096):
    """One record -> dict(input_ids (T,) int64 with <image> expanded, labels (T,) int64, image path
    or None, id). Raises BadRecord (with index and id) for every bad record kind of §1.

    tokenizer: a `tokenizers.Tokenizer` of the checkpoint's tokenizer.json (encode adds BOS).
    num_image_tokens: an int (576 for LLaVA-1.5), or a callable image path -> int (LLaVA-NeXT: the
    count of the image's own anyres block), called once the image is known to decode."""
    rid = record_id_text(record)
    reason = check_conversations(record)
    if reason:
        raise BadRecord(index, rid, reason)
    conversations = record["conversations"]
    image_count = sum(turn["value"].count(IMAGE_TOKEN) for turn in conversations)
    image_in_gpt = any(IMAGE_TOKEN in turn["value"] for turn in conversations if turn["from"] == "gpt")

    image_path = None
    if "image" in record:
        name = record["image"]
        if not isinstance(name, str) or not name:
            raise BadRecord(index, rid, f"image {name!r} is not a file name")
        image_path = os.path.join(images_dir, name)
        if not os.path.isfile(image_path):
            raise BadRecord(index, rid, f"missing image file {name}")
        try:
            with Image.open(image_path) as im:
                im.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any decoding failure is a bad record
            raise BadRecord(index, rid, f"image {name} does not decode: {error}")
        if image_count != 1 or image_in_gpt:
            raise BadRecord(index, rid, f"a record with an image needs exactly one {IMAGE_TOKEN} in a human "
                                        f"turn, found {image_count}{' (in a gpt turn)' if image_in_gpt else ''}")
    elif image_count != 0:
        raise BadRecord(index, rid, f"{image_count} {IMAGE_TOKEN} in a record without an image")

    if image_path is not None and callable(num_image_tokens):
        num_image_tokens = num_image_tokens(image_path)

    text, spans = render(conversations)
    ids = tokenizer.encode(text).ids
    labels = [IGNORE] * len(ids)
    for k, (a, e) in enumerate(spans):
        start, end = tokenizer.encode(text[:a]).ids, tokenizer.encode(text[:e]).ids
        if ids[:len(start)] != start or ids[:len(end)] != end:
            raise BadRecord(index, rid, f"tokenization mismatch at answer {k}")
        for i in range(len(start), len(end)):
            labels[i] = ids[i]

    # Expand the single <image> id to num_image_tokens copies (label -100).
    expanded_ids, expanded_labels = [], []
    for token, label in zip(ids, labels):
        if token == image_token_id:
            expanded_ids += [image_token_id] * num_image_tokens
            expanded_labels += [IGNORE] * num_image_tokens
        else:
            expanded_ids.append(token)
            expanded_labels.append(label)
    if sum(t == image_token_id for t in ids) != (1 if image_path else 0):
        raise BadRecord(index, rid, "the <image> text did not tokenize to one image token")
    if len(expanded_ids) > max_length:
        raise BadRecord(index, rid, f"{len(expanded_ids)} tokens, longer than the model's context {max_length}")
    return {"id": rid, "index": index, "image": image_path,
            "input_ids": torch.tensor(expanded_ids, dtype=torch.int64),
            "labels": torch.tensor(expanded_labels, dtype=torch.int64)}


def is_anyres(image_processor):
    """A LlavaNextImageProcessor (anyres tiles), not LLaVA-1.5's CLIPImageProcessor."""
    return getattr(image_processor, "image_grid_pinpoints", None) is not None


def pixel_values_of(path, image_processor):
    """(3, 336, 336) fp32: the image file through the checkpoint's CLIPImageProcessor.
    With a LlavaNextImageProcessor: {"pixel_values": (1 + rows*cols, 3, crop, crop) fp32,
    "image_sizes": (2,) int64 [height, width]}, as the processor gives them for this image alone."""
    image = Image.open(path).convert("RGB")
    out = image_processor(images=image, return_tensors="pt")
    if is_anyres(image_processor):
        return {"pixel_values": out["pixel_values"][0].to(torch.float32),
                "image_sizes": out["image_sizes"][0].to(torch.int64)}
    return out["pixel_values"][0].to(torch.float32)


def stack_image_inputs(inputs):
    """The batch's image inputs: LLaVA-1.5 tensors stacked (n_images, 3, H, W); LLaVA-NeXT dicts as
    the processor batches several images: pixel_values zero-padded on the patch axis to the most
    patches (n_images, P, 3, crop, crop), image_sizes (n_images, 2); None when there is no image."""
    if not inputs:
        return None
    if not isinstance(inputs[0], dict):
        return torch.stack(inputs)
    most = max(x["pixel_values"].shape[0] for x in inputs)
    padded = [torch.nn.functional.pad(x["pixel_values"], (0, 0, 0, 0, 0, 0, 0, most - x["pixel_values"].shape[0]))
              for x in inputs]
    return {"pixel_values": torch.stack(padded), "image_sizes": torch.stack([x["image_sizes"] for x in inputs])}


def double_image_inputs(inputs):
    """Image inputs (a sample's or a batch's) in float64: a LLaVA-1.5 tensor, or a LLaVA-NeXT dict
    with pixel_values in float64 and image_sizes as they are; None stays None."""
    if inputs is None:
        return None
    if isinstance(inputs, dict):
        return {"pixel_values": inputs["pixel_values"].double(), "image_sizes": inputs["image_sizes"]}
    return inputs.double()


# --------------------------------------------------------------------------------------------
# Batches (§3)
# --------------------------------------------------------------------------------------------

def collate(samples, pad_token_id, image_processor, pixel_cache=None):
    """Right padding: input_ids (B, T) padded with pad_token_id, labels -100, attention_mask 0;
    pixel_values (n_images, 3, H, W) of the samples with an image, in batch order (or None); for
    LLaVA-NeXT a dict of image inputs (stack_image_inputs)."""
    T = max(s["input_ids"].shape[0] for s in samples)
    B = len(samples)
    input_ids = torch.full((B, T), pad_token_id, dtype=torch.int64)
    labels = torch.full((B, T), IGNORE, dtype=torch.int64)
    attention_mask = torch.zeros((B, T), dtype=torch.int64)
    pixels = []
    for b, s in enumerate(samples):
        n = s["input_ids"].shape[0]
        input_ids[b, :n], labels[b, :n], attention_mask[b, :n] = s["input_ids"], s["labels"], 1
        if s["image"] is not None:
            if pixel_cache is not None and s["image"] in pixel_cache:
                pixels.append(pixel_cache[s["image"]])
            else:
                pv = pixel_values_of(s["image"], image_processor)
                if pixel_cache is not None:
                    pixel_cache[s["image"]] = pv
                pixels.append(pv)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask,
            "pixel_values": stack_image_inputs(pixels),
            "lengths": [int(s["input_ids"].shape[0]) for s in samples]}


def padded_causal_mask(lengths, T, dtype):
    """Additive (B, 1, T, T): query i of sample b sees key j iff j <= i and j < lengths[b]."""
    rows = torch.arange(T).view(-1, 1)
    cols = torch.arange(T).view(1, -1)
    mask = torch.zeros(len(lengths), 1, T, T, dtype=dtype)
    for b, n in enumerate(lengths):
        blocked = (cols > rows) | (cols >= n)
        mask[b, 0].masked_fill_(blocked, torch.finfo(dtype).min)
    return mask


def causal_lm_loss(logits, labels):
    """transformers' ForCausalLMLoss: logits[b, i] predicts labels[b, i+1]; mean cross-entropy over
    every pair whose label is not -100, over the whole batch."""
    labels = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[:, 1:]
    if logits.dtype != torch.float64:       # fp64 stays fp64 (finite-difference checks)
        logits = logits.float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE, reduction="mean")


# --------------------------------------------------------------------------------------------
# Forward passes
# --------------------------------------------------------------------------------------------

def merged_embeddings(model, input_ids, pixel_values):
    """inputs_embeds (B, T, D) as LlavaModel.forward builds them (pdrop_reference's helper works
    for any batch: image features are scattered in row-major order, i.e. in batch order)."""
    return pref.merged_embeddings(model, input_ids, pixel_values)


def forward_model(model, batch):
    """The model's own forward with labels on the right-padded batch (LLaVA-NeXT: with image_sizes)."""
    out = model(input_ids=batch["input_ids"], **pref.image_kwargs(batch["pixel_values"]),
                attention_mask=batch["attention_mask"], labels=batch["labels"], use_cache=False)
    return out.loss, out.logits


def run_layer(layer, rotary_emb, hidden, lengths):
    T = hidden.shape[1]
    position_ids = torch.arange(T).view(1, T).expand(hidden.shape[0], T)
    cos_sin = rotary_emb(hidden, position_ids)
    out = layer(hidden, attention_mask=padded_causal_mask(lengths, T, hidden.dtype), position_ids=position_ids,
                position_embeddings=cos_sin, use_cache=False)
    return out[0] if isinstance(out, tuple) else out


def forward_none(model, batch):
    """Layer by layer, no dropping: (loss, logits)."""
    lm = model.model.language_model
    hidden = merged_embeddings(model, batch["input_ids"], batch["pixel_values"])
    for layer in lm.layers:
        hidden = run_layer(layer, lm.rotary_emb, hidden, batch["lengths"])
    logits = model.lm_head(lm.norm(hidden))
    return causal_lm_loss(logits, batch["labels"]), logits


def query_rows_of(labels):
    """Every i with labels[i] == -100 and labels[i+1] != -100 (the ':' of each 'ASSISTANT:')."""
    return torch.nonzero((labels[:-1] == IGNORE) & (labels[1:] != IGNORE)).flatten().tolist()


def validate_schedule(layers, ratios, num_layers):
    return pref.pdrop_schedule(layers, ratios, num_layers)


def forward_pdrop(model, batch, layers, ratios, force_kept=None):
    """PyramidDrop forward: (loss, info) with info["kept"][b][s] the kept original image indices of
    sample b after stage s (None for samples that are not dropped) and info["gaps"] the relative
    score gap at every top-k boundary (last kept vs first dropped), for robustness reports.

    force_kept (testing): same layout as info["kept"], used instead of the ranking."""
    lm = model.model.language_model
    decoder_layers, rotary_emb = lm.layers, lm.rotary_emb
    schedule = dict(validate_schedule(layers, ratios, len(decoder_layers)))
    image_token_id = model.config.image_token_id
    B = batch["input_ids"].shape[0]

    hidden = merged_embeddings(model, batch["input_ids"], batch["pixel_values"])
    lengths = list(batch["lengths"])
    labels = [batch["labels"][b, :lengths[b]] for b in range(B)]
    # Per sample, per current token: original index in the image block (-1 for text).
    image_index = []
    for b in range(B):
        ids = batch["input_ids"][b, :lengths[b]]
        idx = torch.full((lengths[b],), -1, dtype=torch.int64)
        positions = torch.nonzero(ids == image_token_id).flatten()
        idx[positions] = torch.arange(positions.numel())
        image_index.append(idx)
    n_original = [int((idx >= 0).sum()) for idx in image_index]
    info = {"kept": [[] if n_original[b] and query_rows_of(labels[b]) else None for b in range(B)],
            "gaps": [], "lengths": [list(lengths)]}

    stage = 0
    for i, layer in enumerate(decoder_layers):
        hidden = run_layer(layer, rotary_emb, hidden, lengths)
        if (i + 1) not in schedule:
            continue
        ratio = schedule[i + 1]
        rows = []
        for b in range(B):
            h_b = hidden[b:b + 1, :lengths[b]]
            if info["kept"][b] is None:
                rows.append((h_b, labels[b], image_index[b]))
                continue
            columns = torch.nonzero(image_index[b] >= 0).flatten()
            budget = pref.pdrop_budget(n_original[b], ratio)
            if force_kept is not None:
                local = torch.nonzero(torch.isin(image_index[b][columns], force_kept[b][stage])).flatten()
            else:
                with torch.no_grad():
                    probs = pref.query_row_attention(decoder_layers[i + 1], rotary_emb, h_b.detach(),
                                                     torch.arange(lengths[b]).view(1, -1), query_rows_of(labels[b]))
                    scores = probs[:, columns].mean(dim=0)
                local = top_sorted(scores, budget)
                if budget < scores.numel():
                    v = torch.sort(scores, descending=True).values
                    info["gaps"].append(((v[budget - 1] - v[budget]) / v[budget - 1]).item())
            keep = image_index[b] < 0
            keep[columns[local]] = True
            index = torch.nonzero(keep).flatten()     # [text | kept image tokens, in order | text]
            info["kept"][b].append(image_index[b][columns[local]].clone())
            rows.append((h_b.index_select(1, index), labels[b].index_select(0, index),
                         image_index[b].index_select(0, index)))
        # Re-pad the batch on the right; positions become 0..len-1 again (run_layer).
        lengths = [r[0].shape[1] for r in rows]
        T = max(lengths)
        hidden = torch.cat([torch.nn.functional.pad(h, (0, 0, 0, T - h.shape[1])) for h, _, _ in rows], dim=0)
        labels = [l for _, l, _ in rows]
        image_index = [ix for _, _, ix in rows]
        info["lengths"].append(list(lengths))
        stage += 1

    logits = model.lm_head(lm.norm(hidden))
    padded_labels = torch.full((B, hidden.shape[1]), IGNORE, dtype=torch.int64)
    for b in range(B):
        padded_labels[b, :lengths[b]] = labels[b]
    return causal_lm_loss(logits, padded_labels), info


def top_sorted(scores, k):
    """Top k by (-score, index) (a stable sort: ties -> lower index first), returned increasing."""
    return pref.top_sorted(scores, k)


def forward(model, batch, method, schedule=None):
    """(loss, info) for method "none" (info None) or "pdrop" (schedule = dict(layers, ratios))."""
    if method == "none":
        return forward_none(model, batch)[0], None
    if method == "pdrop":
        return forward_pdrop(model, batch, schedule["layers"], schedule["ratios"])
    raise ValueError(f"unknown method {method!r}")


# --------------------------------------------------------------------------------------------
# Gradients, optimizer (§5)
# --------------------------------------------------------------------------------------------

def gradients(model):
    """{checkpoint name: grad} for the parameters that received one; and the names that did not."""
    grads, missing = {}, []
    for name, p in model.named_parameters():
        if p.grad is None:
            missing.append(checkpoint_name(name))
        else:
            grads[checkpoint_name(name)] = p.grad.detach().clone()
    return grads, missing


def make_optimizer(model, lr, weight_decay, warmup, steps):
    """AdamW (betas 0.9/0.999, eps 1e-8): weight decay on tensors of two or more dimensions only;
    cosine schedule with linear warmup (step 0 runs with lr 0 when warmup > 0)."""
    decay = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    return optimizer, scheduler


def train(model, samples, method, schedule, steps, batch_size, lr, warmup, weight_decay, max_grad_norm,
          pad_token_id, image_processor, pixel_cache=None):
    """`steps` optimizer steps on the stream of samples in file order, wrapping around.
    Returns per step: loss (of the forward before the update), lr used, global grad norm, and the
    ranking gaps of pdrop (for robustness reports)."""
    optimizer, scheduler = make_optimizer(model, lr, weight_decay, warmup, steps)
    losses, lrs, norms, gaps = [], [], [], []
    position = 0
    for _ in range(steps):
        chosen = [samples[(position + j) % len(samples)] for j in range(batch_size)]
        position += batch_size
        batch = collate(chosen, pad_token_id, image_processor, pixel_cache)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad(set_to_none=True)
        loss, info = forward(model, batch, method, schedule)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)))
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if info is not None:
            gaps.extend(info["gaps"])
    return {"losses": losses, "lr": lrs, "grad_norm": norms, "gaps": gaps}


def cosine_lr(k, lr, warmup, steps):
    """The schedule of §5 in closed form (checked against transformers' scheduler)."""
    if k < warmup:
        return lr * k / warmup
    return lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * (k - warmup) / (steps - warmup))))
