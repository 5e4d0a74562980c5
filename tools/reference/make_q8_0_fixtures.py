"""Q8_0 as llama.cpp writes it, for the engine's quantizer and kernels to be checked against.

gguf-py's Q8_0 (`gguf.quants.quantize`, bit-exact with ggml's quantize_row_q8_0_ref) quantizes a
(6, 128) fp32 matrix whose blocks of 32 include the cases that matter: all zeros, ties at .5 of a
step (roundf rounds them away from zero), a scale that is an fp16 subnormal, one of fp16's largest,
a lone outlier, and random values. Writes Tests/Fixtures/q8_0/q8_0.safetensors:
  input (6, 128) F32, values (6, 128) I8, scales (6, 4) F16 (ggml's block d), dequantized (6, 128) F32.
And the whole tiny-llava model with its weight matrices through gguf's Q8_0 and back (the matrices
`pdrop quantize` converts), run by transformers on tiny-llava's reference prompt and image:
  Tests/Fixtures/q8_0/tiny-llava-q8_0-reference.safetensors: logits.last (1, vocab), greedy_tokens (16,).
"""
import torch
from transformers import LlavaForConditionalGeneration
import os

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file, save_file

from common import FIXTURES, fixture_dir

BLOCK = 32


def matrix():
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 0.05, size=(6, 128)).astype(np.float32)
    rows[0, :32] = 0                                            # a zero block: d = 0, q = 0
    rows[0, 32:64] = np.arange(-16, 16, dtype=np.float32) * 0.5  # x / d lands on .5: away from zero
    rows[0, 32] = -127                                           # d = 1 exactly
    rows[1, :32] *= 1e-4                                         # d below fp16's normal range
    rows[1, 32:64] = rng.uniform(-6e6, 6e6, 32)                  # d near fp16's largest (65504)
    rows[2, 64:96] = 0.001
    rows[2, 70] = 3.0                                            # one outlier takes the block's scale
    return rows


def quantized_matrix(name, shape):
    """The rule of `pdrop quantize` (QuantizeCommand.quantizes)."""
    return (len(shape) == 2 and shape[1] % BLOCK == 0 and name.endswith(".weight")
            and "embed" not in name and "norm" not in name)


def tiny_llava_reference(directory):
    source = os.path.join(FIXTURES, "tiny-llava")
    model = LlavaForConditionalGeneration.from_pretrained(source, dtype=torch.float32).eval()
    state = model.state_dict()
    names = [name for name, tensor in state.items() if quantized_matrix(name, tuple(tensor.shape))]
    with torch.no_grad():
        for name in names:
            values = state[name].numpy()
            roundtrip = dequantize(quantize(values, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0)
            state[name].copy_(torch.from_numpy(roundtrip.reshape(values.shape).astype(np.float32)))
    reference = load_file(os.path.join(source, "reference-image.safetensors"))
    input_ids = torch.from_numpy(reference["input_ids"].astype(np.int64))[None]
    pixel_values = torch.from_numpy(reference["pixel_values"])[None]
    with torch.no_grad():
        logits = model(input_ids=input_ids, pixel_values=pixel_values).logits[:, -1]
        generated = model.generate(input_ids=input_ids, pixel_values=pixel_values, max_new_tokens=16, do_sample=False,
                                   min_new_tokens=16)
    greedy = generated[0, input_ids.shape[1]:].numpy().astype(np.int64)
    save_file({"logits.last": logits.numpy().astype(np.float32), "greedy_tokens": greedy},
              f"{directory}/tiny-llava-q8_0-reference.safetensors")
    print(f"tiny-llava with {len(names)} Q8_0 matrices: greedy {greedy.tolist()}")


def main():
    x = matrix()
    blocks = quantize(x, GGMLQuantizationType.Q8_0).reshape(-1, 2 + BLOCK)  # (rows · 4, 34) bytes
    scales = blocks[:, :2].copy().view(np.float16).reshape(x.shape[0], -1)
    values = blocks[:, 2:].copy().view(np.int8).reshape(x.shape)
    dequantized = dequantize(quantize(x, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0).reshape(x.shape)
    directory = fixture_dir("q8_0")
    save_file({"input": x, "values": values, "scales": scales, "dequantized": dequantized.astype(np.float32)},
              f"{directory}/q8_0.safetensors")
    print(f"wrote {directory}/q8_0.safetensors: {x.shape[0]} rows, {x.size // BLOCK} blocks")
    tiny_llava_reference(directory)


if __name__ == "__main__":
    main()
