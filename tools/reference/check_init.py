"""Loads a checkpoint written by `pdrop init` in transformers and checks its initialisation.

    python tools/reference/check_init.py DIR [--seed N]

DIR holds model.safetensors (llava-hf hub layout) and config.json. The script loads it with
LlavaForConditionalGeneration.from_pretrained (fp32; no missing or unexpected keys allowed), builds
a fresh LlavaForConditionalGeneration(config) with transformers' own initialisation (torch seed N),
and prints, per parameter group (names with layer indices folded to N), the count, mean and std of
both. A group fails when its constants differ (norm weights 1, biases 0) or when the two stds differ
by more than five standard errors; the script exits 1 if any group fails.
"""
import argparse
import re
import sys

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration


def groups(model):
    out = {}
    for name, tensor in model.state_dict().items():
        key = re.sub(r"\.\d+\.", ".N.", name)
        out.setdefault(key, []).append(tensor.detach().float().reshape(-1))
    return {key: torch.cat(parts) for key, parts in out.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ours, info = LlavaForConditionalGeneration.from_pretrained(args.directory, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"loading info: {problems}")
    torch.manual_seed(args.seed)
    config = LlavaConfig.from_pretrained(args.directory)
    reference = LlavaForConditionalGeneration(config).float()

    a, b = groups(ours), groups(reference)
    failures = 0
    print(f"{'group':78} {'count':>9} {'mean':>10} {'std':>9} | {'hf mean':>10} {'hf std':>9}")
    for key in sorted(b):
        x, y = a.get(key), b[key]
        if x is None:
            print(f"{key:78} missing from the pdrop init checkpoint")
            failures += 1
            continue
        n = x.numel()
        mx, sx, my, sy = x.mean().item(), x.std(unbiased=False).item(), y.mean().item(), y.std(unbiased=False).item()
        if sy == 0:
            ok = torch.equal(x, y)
        else:
            ok = abs(sx - sy) < 5 * sy * (1.0 / n) ** 0.5 and abs(mx) < 5 * sy / n ** 0.5 + 1e-12
        failures += not ok
        print(f"{key:78} {n:9d} {mx:10.6f} {sx:9.6f} | {my:10.6f} {sy:9.6f} {'ok' if ok else 'FAIL'}")
    for key in sorted(set(a) - set(b)):
        print(f"{key:78} not in transformers' model")
        failures += 1
    if problems.get("missing_keys") or problems.get("unexpected_keys"):
        failures += 1
    print("all groups match transformers' initialisation" if failures == 0 else f"{failures} group(s) differ")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
