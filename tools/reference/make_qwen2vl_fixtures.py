"""Writes Tests/Fixtures/tiny-qwen2-vl (or, with the argument qwen2_5_vl, tiny-qwen2.5-vl): a tiny random
Qwen2VLForConditionalGeneration (Qwen2_5_VLForConditionalGeneration: RMSNorm, a gated MLP and window
attention in the tower, with full attention in blocks 1 and 3) as transformers 5's save_pretrained writes it (visual.*, model.layers.*: the hub's names), a small byte-level BPE tokenizer
with Qwen2's pre-tokenizer, special tokens and chat template (trained here on a few sentences, so that
the vocabulary and the embedding stay small), and reference.safetensors with what transformers computes:

  * the vision tower on two photographs of different grids (the processor's pixel_values, one image
    after the other): every block's output (patches in merge order, Qwen2.5-VL's window order undone)
    and the merger's output;
  * a chat prompt with each photograph (landscape: "prompt.*", portrait: "portrait.*") through the
    processor (apply_chat_template, then the processor): input_ids, image_grid_thw, the 3-D position ids and rope delta of get_rope_index,
    every decoder layer's output, the last position's logits, and 16 greedy tokens (argmax, no stop
    at EOS) each recomputed over the whole sequence;
  * the same prompt under PyramidDrop (drops after layers 1, 2, 3 keeping 50%, 25%, 12.5%) and FastV
    (after layer 2, dropping half) with positions preserved (PYRAMIDDROP.md §9): kept tokens, final
    positions, cache lengths, last logits and greedy tokens.

Run: python tools/reference/make_qwen2vl_fixtures.py [qwen2_vl | qwen2_5_vl]   (from the package root)"""
import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                          Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor)
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

import pdrop_reference
from common import fixture_dir, randomize

GREEDY_STEPS = 16
MIN_PIXELS, MAX_PIXELS = 3136, 50176
QUESTION = "What is shown in this image?"
PORTRAIT_QUESTION = "Describe the picture."
# Qwen2-VL-7B-Instruct's chat template (images and text only).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = [
    "What is shown in this image? A cat is sitting on a wooden floor and looking at the camera.",
    "You are a helpful assistant. Describe the picture in one sentence.",
    "The cat has orange, white and black fur; its eyes are yellow. There is a door behind it.",
    "How many objects are in the image? Three: a red circle, a green square and a blue triangle.",
    "system user assistant image picture photo animal kitten tabby whiskers ears nose tail",
] * 4


def make_tokenizer():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


KIND = sys.argv[1] if len(sys.argv) > 1 else "qwen2_vl"
if KIND == "qwen2_vl":
    CONFIG, MODEL, PROCESSOR, NAME = Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, "tiny-qwen2-vl"
    VISION = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 4, "mlp_ratio": 2}
elif KIND == "qwen2_5_vl":
    CONFIG, MODEL, PROCESSOR, NAME = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, "tiny-qwen2.5-vl"
    VISION = {"depth": 4, "hidden_size": 32, "out_hidden_size": 64, "num_heads": 4, "intermediate_size": 48, "hidden_act": "silu",
              "window_size": 112, "fullatt_block_indexes": [1, 3]}
else:
    raise SystemExit(f"unknown kind {KIND!r}: qwen2_vl or qwen2_5_vl")

torch.manual_seed(0)
root = Path(__file__).resolve().parents[2]
tokenizer = make_tokenizer()
ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
config = CONFIG(
    text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "max_position_embeddings": 1024,
                 "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                 "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0}},
    vision_config={**VISION, "spatial_merge_size": 2, "patch_size": 14, "temporal_patch_size": 2, "in_channels": 3},
    image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
    vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
model = MODEL(config).eval()
randomize(model, seed=11, std=0.1)
out = fixture_dir(NAME)
for stale in ("model.safetensors", "reference.safetensors"):
    if os.path.exists(os.path.join(out, stale)):
        os.remove(os.path.join(out, stale))
model.save_pretrained(out)
tokenizer.save_pretrained(out)
(Path(out) / "preprocessor_config.json").write_text(json.dumps(
    {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
     "image_processor_type": "Qwen2VLImageProcessor"}, indent=2) + "\n")
model = MODEL.from_pretrained(out, dtype=torch.float32).eval()
image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
reference = {}

# The vision tower on two images of different grids.
images = [Image.open(root / "Tests/Fixtures/images/chelsea.jpg").convert("RGB"),
          Image.open(root / "Tests/Fixtures/qwen2-vl-images/chelsea_portrait.png").convert("RGB")]
batch = image_processor(images=images, return_tensors="pt")
blocks = []
hooks = [block.register_forward_hook(lambda module, args, output: blocks.append(output.detach().clone()))
         for block in model.model.visual.blocks]
with torch.no_grad():
    merged = model.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"]).pooler_output
for hook in hooks:
    hook.remove()
if KIND == "qwen2_5_vl":  # the blocks see the patches in window order; undo it
    vision = config.vision_config
    window_index, _ = modeling_qwen2_5_vl.get_vision_window_index(batch["image_grid_thw"], vision.spatial_merge_size,
                                                                  vision.window_size, vision.patch_size)
    reverse = torch.argsort(window_index)
    unit = vision.spatial_merge_size ** 2
    blocks = [block.reshape(-1, unit, block.shape[-1])[reverse].reshape(-1, block.shape[-1]) for block in blocks]
reference.update({"image_grid_thw": batch["image_grid_thw"].to(torch.int64), "vision.merged": merged.contiguous()})
reference.update({f"vision.block.{i}": tensor.contiguous() for i, tensor in enumerate(blocks)})

# A chat prompt with one image, through the processor and the whole model.
# Without torchvision, transformers' class check trips over the (unused) video processor mapping; the
# image processor and tokenizer given are the right classes, so the check is skipped.
PROCESSOR.check_argument_for_proper_class = lambda self, name, argument: None
processor = PROCESSOR(image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=CHAT_TEMPLATE)
def prompt_reference(image, question, prefix):
    """One chat message with `image` through the processor and the model: reference entries under
    `prefix` (input ids, grid, 3-D positions, rope delta, every decoder layer, last logits, 16 greedy
    tokens each recomputed over the whole sequence), and the processor's inputs and positions."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt", return_mm_token_type_ids=True)
    position_ids, rope_deltas = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                                           image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
    layers = []
    hooks = [layer.register_forward_hook(lambda module, args, output: layers.append((output[0] if isinstance(output, tuple) else output).detach().clone()))
             for layer in model.model.language_model.layers]
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    for hook in hooks:
        hook.remove()
    sequence = inputs["input_ids"]
    greedy = []
    with torch.no_grad():
        for _ in range(GREEDY_STEPS):
            types = torch.cat([inputs["mm_token_type_ids"], torch.zeros((1, sequence.shape[1] - inputs["input_ids"].shape[1]), dtype=torch.int64)], 1)
            step = model(input_ids=sequence, attention_mask=torch.ones_like(sequence), pixel_values=inputs["pixel_values"],
                         image_grid_thw=inputs["image_grid_thw"], mm_token_type_ids=types).logits[0, -1]
            greedy.append(int(step.argmax()))
            sequence = torch.cat([sequence, torch.tensor([[greedy[-1]]])], dim=1)
    reference.update({
        f"{prefix}.input_ids": inputs["input_ids"][0].to(torch.int64), f"{prefix}.image_grid_thw": inputs["image_grid_thw"].to(torch.int64),
        f"{prefix}.position_ids": position_ids[:, 0].to(torch.int64).contiguous(), f"{prefix}.rope_delta": rope_deltas.reshape(1).to(torch.int64),
        f"{prefix}.last_logits": logits[-1].contiguous(), f"{prefix}.greedy": torch.tensor(greedy, dtype=torch.int64)})
    reference.update({f"{prefix}.layer.{i}": tensor[0].contiguous() for i, tensor in enumerate(layers)})
    print(f"{NAME} {prefix}: grid", inputs["image_grid_thw"].tolist(), len(inputs["input_ids"][0]), "tokens,",
          int((inputs["input_ids"][0] == config.image_token_id).sum()), "image tokens; greedy", greedy)
    return text, inputs, position_ids, logits, greedy


text, inputs, position_ids, logits, greedy = prompt_reference(images[0], QUESTION, "prompt")
prompt_reference(images[1], PORTRAIT_QUESTION, "portrait")  # another aspect ratio, another grid

# PyramidDrop and FastV as ../shared/PYRAMIDDROP.md §9 fixes them for 3-D positions (pdrop_reference.run
# with the prompt's M-RoPE positions, preserved after each drop): the kept tokens of every drop, the
# positions after the last, each layer's cache length, the last logits and 16 greedy tokens.
eager = pdrop_reference.load_model(out, MODEL)
image_inputs = {"pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}
none = pdrop_reference.run(eager, inputs["input_ids"], image_inputs, method="none", position_ids=position_ids)
assert none["greedy_tokens"].tolist() == greedy and torch.allclose(none["logits_last"][0], logits[-1], atol=1e-5), "the reference run is the model"
for name, settings in {"pdrop": dict(method="pdrop", layers=(1, 2, 3), ratios=(0.5, 0.25, 0.125)),
                       "fastv": dict(method="fastv", fastv_k=2, fastv_r=0.5)}.items():
    result = pdrop_reference.run(eager, inputs["input_ids"], image_inputs, positions="preserve", position_ids=position_ids, **settings)
    for stage, kept in enumerate(result["kept"]):
        reference[f"{name}.kept.{stage}"] = kept[0].to(torch.int64)
    reference[f"{name}.positions"] = result["positions"][-1].to(torch.int64).contiguous()
    reference[f"{name}.cache_lengths"] = result["cache_lengths"]
    reference[f"{name}.logits.last"] = result["logits_last"][0].contiguous()
    reference[f"{name}.greedy_tokens"] = result["greedy_tokens"]
    print(name, "kept", [len(k[0]) for k in result["kept"]], "cache", result["cache_lengths"].tolist(), "greedy", result["greedy_tokens"].tolist())
save_file(reference, os.path.join(out, "reference.safetensors"), metadata={
    "source": f"transformers 5.23 {MODEL.__name__}, {PROCESSOR.__name__}",
    "images": "Tests/Fixtures/images/chelsea.jpg,Tests/Fixtures/qwen2-vl-images/chelsea_portrait.png", "prompt": text})
print(repr(text))
