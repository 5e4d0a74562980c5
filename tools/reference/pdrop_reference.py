"""PyramidDrop (PDrop) and FastV on LLaVA: the PyTorch reference the Swift engine is tested against.

Semantics: ../shared/PYRAMIDDROP.md (the authors' released code, with GQA and several image
blocks supported). Everything here runs in fp32 on top of transformers' own modules:

  * LlavaForConditionalGeneration.from_pretrained(..., dtype=float32, attn_implementation="eager")
  * inputs_embeds = text embeddings with the projected image features scattered into the
    image-token rows, exactly as LlavaModel.forward does it;
  * the decoder layers `model.model.language_model.layers[i]` are called one at a time, with
    position embeddings from the model's `rotary_emb` for the *current* position ids, an explicit
    additive causal mask, and a per-layer KV cache managed here (`PyramidCache`), so that every
    layer's cache holds only the tokens that layer saw;
  * image tokens are dropped between layers (PDrop: several stages; FastV: once);
  * final norm + lm_head, then 16 greedy steps through the per-layer caches (no EOS stop).

Vocabulary used below:
  J            number of decoder layers.
  "block"      a maximal run of the image token id in input_ids (one image).
  N_b          the original number of image tokens of block b.
  stage s      0-based index into the schedule; drop s happens after l_s layers have run.
  "current"    the sequence as it is at a given point of the prefill (after earlier drops).
  kept index   index of an image token inside its ORIGINAL block, 0..N_b-1.
"""
import math

import torch
from torch import nn
from transformers import LlavaForConditionalGeneration
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

GREEDY_STEPS = 16


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def load_model(directory, model_class=LlavaForConditionalGeneration):
    """The checkpoint in fp32. Eager attention so that layer outputs can expose the real
    attention probabilities (FastV ranks with them). model_class: LlavaForConditionalGeneration
    or LlavaNextForConditionalGeneration (same module layout: model.model.language_model, lm_head)."""
    model = model_class.from_pretrained(directory, dtype=torch.float32,
                                        attn_implementation="eager").eval()
    assert model.model.language_model.config._attn_implementation == "eager"
    return model


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------

def pdrop_schedule(layers, ratios, num_layers):
    """Validates a PDrop schedule and returns it as a list of (layer, ratio) pairs.

    layers: 1-based layer counts l_1 < l_2 < ... ("drop after l_s layers have run"), each in 1..J-1.
    ratios: cumulative keep ratios r_1 >= r_2 >= ... of the ORIGINAL N, each in (0, 1].
    An empty schedule is allowed and means "no dropping"."""
    layers, ratios = list(layers), list(ratios)
    if len(layers) != len(ratios):
        raise ValueError(f"PDrop schedule: {len(layers)} layers but {len(ratios)} ratios; "
                         "the two lists must have the same length")
    for l in layers:
        if isinstance(l, bool) or not isinstance(l, int):
            raise ValueError(f"PDrop schedule: layer {l!r} is not an integer")
        if not 1 <= l <= num_layers - 1:
            raise ValueError(f"PDrop schedule: layer {l} is outside 1...{num_layers - 1} "
                             f"(the model has {num_layers} decoder layers)")
    for a, b in zip(layers, layers[1:]):
        if not a < b:
            raise ValueError(f"PDrop schedule: layers must be strictly increasing, got {layers}")
    for r in ratios:
        if not (isinstance(r, (int, float)) and not isinstance(r, bool)) or not 0.0 < r <= 1.0 \
                or math.isnan(r):
            raise ValueError(f"PDrop schedule: ratio {r!r} is outside (0, 1]")
    for a, b in zip(ratios, ratios[1:]):
        if b > a:
            raise ValueError(f"PDrop schedule: ratios must be non-increasing (cumulative), got {ratios}")
    return list(zip(layers, [float(r) for r in ratios]))


def pdrop_budget(n, ratio):
    """Tokens of a block of n image tokens kept after a stage with cumulative ratio r: floor(n*r)."""
    return int(math.floor(n * ratio))


def fastv_budget(n, drop_ratio):
    """FastV keeps round(n * (1 - R)) tokens (Python's round: half to even)."""
    return int(round(n * (1.0 - drop_ratio)))


def validate_fastv(k, drop_ratio, num_layers):
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_layers - 1:
        raise ValueError(f"FastV: K={k!r} must be an integer in 1...{num_layers - 1}")
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"FastV: R={drop_ratio!r} must be in [0, 1)")


# --------------------------------------------------------------------------------------------
# Image blocks
# --------------------------------------------------------------------------------------------

def image_blocks(input_ids, image_token_id):
    """Maximal runs of image_token_id in input_ids (1D): list of (start, end) half-open."""
    is_image = (input_ids == image_token_id).tolist()
    blocks, start = [], None
    for i, flag in enumerate(is_image + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            blocks.append((start, i))
            start = None
    return blocks


# --------------------------------------------------------------------------------------------
# Attention pieces shared by the ranking functions
# --------------------------------------------------------------------------------------------

def apply_rope(x, cos, sin):
    """RoPE as transformers' apply_rotary_pos_emb: x (1, heads, T, hd), cos/sin (1, T, hd)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def causal_mask(query_len, key_len, query_offset, dtype=torch.float32):
    """Additive mask (1, 1, q, k): query row i (sequence index query_offset+i) sees keys 0..that index.
    Causality is by sequence order (not by position id), also when positions are preserved."""
    rows = torch.arange(query_len).view(-1, 1) + query_offset
    cols = torch.arange(key_len).view(1, -1)
    mask = torch.zeros(query_len, key_len, dtype=dtype)
    mask.masked_fill_(cols > rows, torch.finfo(dtype).min)
    return mask.view(1, 1, query_len, key_len)


def query_row_attention(layer, rotary_emb, hidden, position_ids, query_rows):
    """Softmax attention probabilities of the given query rows over ALL keys, as `layer`'s
    self-attention would compute them on input `hidden`, averaged over heads.

    hidden (1, T, D), position_ids (1, T), query_rows: list of sequence indices.
    Returns (len(query_rows), T) fp32. Only the query rows are projected: no T x T matrix."""
    attn = layer.self_attn
    hd = attn.head_dim
    x = layer.input_layernorm(hidden)                                          # (1, T, D)
    rows = torch.tensor(query_rows, dtype=torch.long)
    q = attn.q_proj(x[:, rows]).view(1, len(query_rows), -1, hd).transpose(1, 2)   # (1, H, nq, hd)
    k = attn.k_proj(x).view(1, x.shape[1], -1, hd).transpose(1, 2)                # (1, KVH, T, hd)
    cos, sin = rotary_emb(x, position_ids)                                     # current positions
    q = apply_rope(q, cos[:, rows], sin[:, rows])
    k = apply_rope(k, cos, sin)
    k = repeat_kv(k, attn.num_key_value_groups)                                # GQA: head h -> group h // g
    logits = torch.matmul(q, k.transpose(2, 3)) * attn.scaling                 # (1, H, nq, T)
    mask = torch.stack([causal_mask(1, x.shape[1], r)[0, 0, 0] for r in query_rows])  # (nq, T)
    probs = torch.softmax((logits + mask).float(), dim=-1, dtype=torch.float32)
    return probs[0].mean(dim=0)                                                # mean over heads


def top_sorted(scores, k):
    """Indices of the k highest scores, ties broken by the lower index, returned in increasing order."""
    order = torch.sort(scores, descending=True, stable=True).indices  # stable: equal -> lower index first
    return torch.sort(order[:k]).values


# --------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------

def rank_pdrop(next_layer, rotary_emb, hidden, position_ids, query_rows, block_columns, budgets):
    """PDrop ranking after layer l (1-based).

    next_layer: 0-based layer l (the layer that would run next); hidden: hidden states leaving
    layer l (its input); position_ids: the current ones; query_rows: [last prompt token] in
    inference; block_columns: per block, the current sequence indices of its surviving image
    tokens; budgets: per block, how many to keep.

    Returns (kept, scores): per block, the kept positions *within the block's current tokens*
    (sorted), and the block's score vector (one per current image token of the block)."""
    probs = query_row_attention(next_layer, rotary_emb, hidden, position_ids, query_rows)  # (nq, T)
    kept, scores = [], []
    for columns, budget in zip(block_columns, budgets):
        s = probs[:, columns].mean(dim=0)          # image columns of this block, then mean over query rows
        kept.append(top_sorted(s, budget))
        scores.append(s)
    return kept, scores


def rank_fastv(attention_probs, block_columns, budgets):
    """FastV ranking from the REAL attention of 0-based layer K-1 (captured during its forward):
    attention_probs (1, H, T, T); last query row, mean over heads, image columns of each block."""
    last = attention_probs[0, :, -1, :].float().mean(dim=0)                    # (T,)
    kept, scores = [], []
    for columns, budget in zip(block_columns, budgets):
        s = last[columns]
        kept.append(top_sorted(s, budget))
        scores.append(s)
    return kept, scores


# --------------------------------------------------------------------------------------------
# Per-layer KV cache
# --------------------------------------------------------------------------------------------

class PyramidCache:
    """Minimal KV cache: one (key, value) pair per layer, each of its own length.
    LlamaAttention only calls `update(key, value, layer_idx)` (keys already rotated)."""

    def __init__(self, num_layers):
        self.keys = [None] * num_layers
        self.values = [None] * num_layers

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self.keys[layer_idx] is None:
            self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key_states], dim=-2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value_states], dim=-2)
        return self.keys[layer_idx], self.values[layer_idx]

    def length(self, layer_idx):
        return 0 if self.keys[layer_idx] is None else self.keys[layer_idx].shape[-2]


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------

def image_kwargs(pixel_values):
    """The image inputs as model keyword arguments. `pixel_values` is either a tensor (LLaVA:
    (n_images, 3, H, W)) or a dict of the processor's image outputs (LLaVA-NeXT:
    {"pixel_values": (n_images, patches, 3, crop, crop), "image_sizes": (n_images, 2)})."""
    if pixel_values is None:
        return {}
    return dict(pixel_values) if isinstance(pixel_values, dict) else {"pixel_values": pixel_values}


def merged_embeddings(model, input_ids, pixel_values):
    """inputs_embeds as LlavaModel.forward / LlavaNextModel.forward build them: token embeddings,
    image-token rows replaced by the projected image features (vision_feature_layer / select
    strategy from the config; for LLaVA-NeXT the packed anyres features of get_image_features)."""
    inner = model.model
    embeds = inner.get_input_embeddings()(input_ids)
    if pixel_values is None:
        return embeds
    features = inner.get_image_features(**image_kwargs(pixel_values), return_dict=True).pooler_output
    features = torch.cat(list(features), dim=0).to(embeds.dtype)
    mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
    assert int(mask.sum()) * embeds.shape[-1] == features.numel(), "image tokens and features disagree"
    return embeds.masked_scatter(mask, features)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def run_layer(layer, rotary_emb, hidden, position_ids, mask, cache, capture_attention=False):
    """One decoder layer on (1, T, D) with the given positions / mask, appending to `cache`.
    With capture_attention, also returns the layer's own softmax probabilities (1, H, T, S)."""
    captured = {}
    handle = None
    if capture_attention:
        handle = layer.self_attn.register_forward_hook(
            lambda module, args, output: captured.__setitem__("probs", output[1]))
    cos_sin = rotary_emb(hidden, position_ids)
    out = layer(hidden, attention_mask=mask, position_ids=position_ids, past_key_values=cache,
                use_cache=True, position_embeddings=cos_sin)
    out = out[0] if isinstance(out, tuple) else out
    if handle is not None:
        handle.remove()
    return out, captured.get("probs")


@torch.no_grad()
def run(model, input_ids, pixel_values, method="none", layers=(), ratios=(), fastv_k=2, fastv_r=0.5,
        positions=None, greedy_steps=GREEDY_STEPS, all_logits=False, force_kept=None, position_ids=None):
    """Prefill with dropping, then greedy decoding through the per-layer caches.

    method: "none" | "pdrop" (layers / ratios) | "fastv" (fastv_k / fastv_r).
    positions: "reindex" | "preserve"; default "reindex" for PDrop, "preserve" for FastV
    (irrelevant for "none").
    input_ids (1, T) int64; pixel_values (n_images, 3, H, W), a dict of image inputs (image_kwargs) or None.
    force_kept: testing only: per stage, per block, the original block indices to keep instead of
    ranking (used to check that cached decoding equals a prefill of the longer sequence).
    position_ids: the prompt's positions, (1, T) by default arange(T); Qwen2-VL's M-RoPE gives
    (3, 1, T) (get_rope_index). Multi-axis positions are only preserved (PYRAMIDDROP.md §9), and
    decoding continues at the largest prompt position + 1 + step on every axis.

    Returns a dict:
      blocks          [(start, end)] original image blocks
      stages          [(layer, per-block budgets)] one per drop
      kept            per stage, per block: int64 sorted original block indices kept after the drop
      scores          per stage, per block: fp32 ranking score of the block's tokens before the drop
      positions       per stage: int64 (T_s,) position ids after the drop
      hidden          per layer: (T_i, D) the layer's output (before any drop that follows it)
      logits_last     (1, V) last-position prefill logits;  logits (T_final, V) with all_logits
      greedy_tokens   (greedy_steps,) int64
      cache_lengths   (J,) int64 per-layer KV cache length after prefill
      decode_logits   per decode step t (0-based), the (V,) logits that chose greedy_tokens[t+1]
    """
    lm = model.model.language_model
    decoder_layers, rotary_emb = lm.layers, lm.rotary_emb
    num_layers = len(decoder_layers)
    image_token_id = model.config.image_token_id

    if method == "none":
        drops = {}
        positions = positions or "reindex"
    elif method == "pdrop":
        schedule = pdrop_schedule(layers, ratios, num_layers)
        drops = {l: ("pdrop", r) for l, r in schedule}         # after l layers ran: keep floor(N * r)
        positions = positions or "reindex"
    elif method == "fastv":
        validate_fastv(fastv_k, fastv_r, num_layers)
        drops = {fastv_k: ("fastv", fastv_r)}
        positions = positions or "preserve"
    else:
        raise ValueError(f"unknown method {method!r}")
    if positions not in ("reindex", "preserve"):
        raise ValueError(f"positions must be 'reindex' or 'preserve', got {positions!r}")

    ids = input_ids[0]
    T = ids.shape[0]
    blocks = image_blocks(ids, image_token_id)
    block_sizes = [e - s for s, e in blocks]

    # Per current token: which block it belongs to (-1: text) and its original sequence index.
    token_block = torch.full((T,), -1, dtype=torch.long)
    for b, (s, e) in enumerate(blocks):
        token_block[s:e] = b
    token_orig = torch.arange(T)
    if position_ids is None:
        position_ids = torch.arange(T).view(1, T)
    elif position_ids.dim() == 3:
        if positions == "reindex" and method != "none":
            raise ValueError("reindex has no meaning for multi-axis (M-RoPE) positions; use preserve")
        positions = "preserve"
    continuation = int(position_ids.max()) + 1   # where generated text continues (T for 1-D positions)
    hidden = merged_embeddings(model, input_ids, pixel_values)
    query_rows_fn = lambda length: [length - 1]   # inference: the last prompt token

    cache = PyramidCache(num_layers)
    result = {"blocks": blocks, "stages": [], "kept": [], "scores": [], "positions": [], "hidden": []}

    # ---------------- prefill ----------------
    for i, layer in enumerate(decoder_layers):
        length = hidden.shape[1]
        drop = drops.get(i + 1)          # a drop after this layer (1-based count i+1)?
        need_probs = drop is not None and drop[0] == "fastv"
        layer_input = hidden
        hidden, probs = run_layer(layer, rotary_emb, hidden, position_ids, causal_mask(length, length, 0),
                                  cache, capture_attention=need_probs)
        result["hidden"].append(hidden[0].clone())
        if drop is None or not blocks:
            continue

        kind, value = drop
        block_columns = [torch.nonzero(token_block == b).flatten() for b in range(len(blocks))]
        if kind == "pdrop":
            budgets = [pdrop_budget(n, value) for n in block_sizes]
            # The score uses the NEXT layer (0-based i+1 = l) on the hidden states leaving layer l.
            kept_local, scores = rank_pdrop(decoder_layers[i + 1], rotary_emb, hidden, position_ids,
                                            query_rows_fn(length), block_columns, budgets)
        else:
            budgets = [fastv_budget(n, value) for n in block_sizes]
            kept_local, scores = rank_fastv(probs, block_columns, budgets)
            # Cross-check: the captured attention equals the query-row recomputation on this
            # layer's own input (same weights, same positions).
            again = query_row_attention(layer, rotary_emb, layer_input, position_ids, query_rows_fn(length))[0]
            assert torch.allclose(again, probs[0, :, -1].mean(0), atol=1e-6), "FastV attention mismatch"

        if force_kept is not None:
            stage = len(result["stages"])
            kept_local = [torch.nonzero(torch.isin(token_orig[columns] - blocks[b][0],
                                                   force_kept[stage][b])).flatten()
                          for b, columns in enumerate(block_columns)]
        # Keep mask over current tokens: text always, image tokens only if kept.
        keep = token_block < 0
        kept_original = []
        for b, (columns, local) in enumerate(zip(block_columns, kept_local)):
            keep[columns[local]] = True
            kept_original.append((token_orig[columns[local]] - blocks[b][0]).clone())
        index = torch.nonzero(keep).flatten()       # increasing: [text | kept image, in order | text]
        hidden = hidden[:, index]
        token_block, token_orig = token_block[index], token_orig[index]
        if positions == "reindex":
            position_ids = torch.arange(index.shape[0]).view(1, -1)
        else:
            position_ids = position_ids[..., index]   # original positions of the survivors

        result["stages"].append((i + 1, budgets))
        result["kept"].append(kept_original)
        result["scores"].append([s.clone() for s in scores])
        result["positions"].append(position_ids[..., 0, :].clone() if position_ids.dim() == 3 else position_ids[0].clone())

    hidden = lm.norm(hidden)
    # The last row on its own (the same matmul shape whatever all_logits is, so runs compare exactly).
    result["logits_last"] = model.lm_head(hidden[:, -1:])[0].clone()
    if all_logits:
        result["logits"] = model.lm_head(hidden)[0].clone()
    result["cache_lengths"] = torch.tensor([cache.length(i) for i in range(num_layers)], dtype=torch.long)

    # ---------------- greedy decode ----------------
    # Position of the new token at step t: "reindex" -> the layer's cache length before appending
    # (= full position minus tokens dropped before that layer's stage); "preserve" -> the
    # continuation position + t (T + t for 1-D positions), on every axis.
    next_token = result["logits_last"][0].argmax()
    generated, decode_logits = [], []
    for step in range(greedy_steps):
        generated.append(int(next_token))
        if step == greedy_steps - 1:
            break                                   # the last token's logits are never needed
        h = model.model.get_input_embeddings()(next_token.view(1, 1))
        for i, layer in enumerate(decoder_layers):
            pos = cache.length(i) if positions == "reindex" else continuation + step
            h, _ = run_layer(layer, rotary_emb, h, torch.full((*position_ids.shape[:-1], 1), pos),
                             torch.zeros(1, 1, 1, cache.length(i) + 1), cache)
        decode_logits.append(model.lm_head(lm.norm(h))[0, -1])
        next_token = decode_logits[-1].argmax()
    result["greedy_tokens"] = torch.tensor(generated, dtype=torch.long)
    result["decode_logits"] = decode_logits
    result["positions_mode"] = positions
    return result


# --------------------------------------------------------------------------------------------
# Sanity checks
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def model_greedy(model, input_ids, pixel_values, steps=GREEDY_STEPS):
    """The model's own forward + its own DynamicCache: all prefill logits and greedy tokens."""
    out = model(input_ids=input_ids, use_cache=True, **image_kwargs(pixel_values))
    logits, past = out.logits[0], out.past_key_values
    token, generated = logits[-1].argmax(), []
    for step in range(steps):
        generated.append(int(token))
        if step == steps - 1:
            break
        out = model(input_ids=token.view(1, 1), past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[0, -1].argmax()
    return logits, torch.tensor(generated, dtype=torch.long)


def sanity_checks(model, input_ids, pixel_values, verbose=True):
    """(1) method none reproduces the model's own logits (1e-5) and greedy tokens;
    (2) PDrop with every ratio 1.0 equals none; (3) FastV with R = 0 equals none;
    (4) the schedule validator rejects bad input."""
    report = {}
    ref_logits, ref_tokens = model_greedy(model, input_ids, pixel_values)
    none = run(model, input_ids, pixel_values, "none", all_logits=True)
    diff = (none["logits"] - ref_logits).abs().max().item()
    assert diff <= 1e-5, f"layer-by-layer logits differ from the model's by {diff}"
    assert torch.equal(none["greedy_tokens"], ref_tokens), (none["greedy_tokens"], ref_tokens)
    report["none_vs_model_max_abs_logits"] = diff
    report["none_vs_model_greedy_equal"] = True

    num_layers = len(model.model.language_model.layers)
    ones = run(model, input_ids, pixel_values, "pdrop", layers=[2, 4, 6], ratios=[1.0, 1.0, 1.0])
    d = (ones["logits_last"] - none["logits_last"]).abs().max().item()
    dh = max((a - b).abs().max().item() for a, b in zip(ones["hidden"], none["hidden"]))
    assert d <= 1e-6 and dh <= 1e-6 and torch.equal(ones["greedy_tokens"], none["greedy_tokens"])
    report["pdrop_ratio1_vs_none_max_abs_logits"] = d
    report["pdrop_ratio1_vs_none_max_abs_hidden"] = dh

    fast0 = run(model, input_ids, pixel_values, "fastv", fastv_k=2, fastv_r=0.0)
    d = (fast0["logits_last"] - none["logits_last"]).abs().max().item()
    assert d <= 1e-6 and torch.equal(fast0["greedy_tokens"], none["greedy_tokens"])
    report["fastv_r0_vs_none_max_abs_logits"] = d

    bad = [([2, 4], [0.5]), ([2, 4], [0.5, 0.0]), ([2, 4], [0.5, 1.5]), ([2, 4], [0.25, 0.5]),
           ([4, 2], [0.5, 0.25]), ([2, 2], [0.5, 0.25]), ([0], [0.5]), ([num_layers], [0.5])]
    for l, r in bad:
        try:
            pdrop_schedule(l, r, num_layers)
        except ValueError:
            continue
        raise AssertionError(f"schedule {l} / {r} was accepted")
    report["schedule_validation_rejects"] = len(bad)
    if verbose:
        for k, v in report.items():
            print(f"  sanity {k}: {v}")
    return report, none


def check_decode_against_prefill(model, input_ids, pixel_values, result, steps=(1, 5, 15), atol=1e-4, **kwargs):
    """Cached decoding through the pyramid cache must equal a prefill of prompt + generated tokens
    that drops exactly the same image tokens (appended tokens are text, never dropped; causal
    attention keeps the prompt rows unchanged). This checks the decode positions: the layer's
    cache length for "reindex", T + step for "preserve". Returns the largest difference."""
    worst = 0.0
    for t in steps:
        extended = torch.cat([input_ids, result["greedy_tokens"][:t].view(1, -1)], dim=1)
        again = run(model, extended, pixel_values, greedy_steps=1, force_kept=result["kept"], **kwargs)
        d = (again["logits_last"][0] - result["decode_logits"][t - 1]).abs().max().item()
        assert d <= atol, f"decode step {t} differs from prefill by {d}"
        worst = max(worst, d)
    return worst
