"""Shared helpers of the reference scripts: deterministic tiny models, fixture writing."""
import json
import os

import torch
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")


def fixture_dir(name):
    path = os.path.normpath(os.path.join(FIXTURES, name))
    os.makedirs(path, exist_ok=True)
    return path


def randomize(model, seed, std=0.2):
    """Random weights large enough that every layer matters (init_weights gives tiny ones).
    Norm weights are drawn around 1 so the norms are not the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            values = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * values)
            else:
                parameter.copy_(std * values)


def round_to(model, dtype):
    """Round every parameter to `dtype` and back, so fp32 computation sees exactly the stored weights."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(dtype).to(torch.float32))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def save_reference(path, tensors, metadata):
    """Reference outputs as safetensors (fp32 / int64), contiguous, with string metadata."""
    cleaned = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    save_file(cleaned, path, metadata={k: str(v) for k, v in metadata.items()})


def record_decoder(model, language_model, input_ids, greedy_steps, store_full_logits, **extra_inputs):
    """Runs `model` on input_ids (1, T) (and `extra_inputs`, e.g. pixel_values): embeddings,
    each decoder layer's output, the final norm's output, logits, then greedy decoding with the
    KV cache for `greedy_steps` tokens."""
    captured = {}
    hooks = []
    for index, layer in enumerate(language_model.layers):
        def hook(module, args, output, index=index):
            captured[f"hidden.layer.{index}"] = (output[0] if isinstance(output, tuple) else output)[0].clone()
        hooks.append(layer.register_forward_hook(hook))
    # The decoder's input (text embeddings with image features merged in) is the first layer's input.
    hooks.append(language_model.layers[0].register_forward_hook(
        lambda m, a, kw, o: captured.__setitem__("hidden.embeddings", (a[0] if a else kw["hidden_states"])[0].clone()),
        with_kwargs=True))
    hooks.append(language_model.norm.register_forward_hook(
        lambda m, a, o: captured.__setitem__("hidden.final_norm", o[0].clone())))
    with torch.no_grad():
        output = model(input_ids=input_ids, use_cache=True, **extra_inputs)
    for h in hooks:
        h.remove()
    logits = output.logits[0]
    tensors = dict(captured)
    tensors["input_ids"] = input_ids[0].to(torch.int64)
    tensors["logits.last"] = logits[-1:].clone()
    if store_full_logits:
        tensors["logits"] = logits.clone()

    # Greedy decoding, one token at a time through the cache, never stopping at EOS.
    past = output.past_key_values
    next_token = logits[-1].argmax()
    generated = []
    with torch.no_grad():
        for _ in range(greedy_steps):
            generated.append(int(next_token))
            step = model(input_ids=next_token.view(1, 1), past_key_values=past, use_cache=True)
            past = step.past_key_values
            next_token = step.logits[0, -1].argmax()
    tensors["greedy_tokens"] = torch.tensor(generated, dtype=torch.int64)
    return tensors
