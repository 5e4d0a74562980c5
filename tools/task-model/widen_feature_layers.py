"""Gives a trained task model a second vision feature layer without changing what it computes.

llava-hf's `vision_feature_layer` may be a list: the projector then reads the listed hidden
states of the vision tower concatenated per token. This script appends one layer (by default 0:
the patch embeddings plus the position embedding, after CLIP's pre-layernorm, where a patch's place
is most plainly written) to a checkpoint's list, and widens the projector's first linear with zero
columns for it, so the widened model gives the same outputs until training uses the new columns.

Usage: python widen_feature_layers.py SOURCE_DIR OUTPUT_DIR [--layer 0]
SOURCE_DIR must hold fp32 weights (`pdrop convert --dtype float32` first).
"""
import argparse
import json
import pathlib
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--layer", type=int, default=0, help="the vision hidden state to add (0 = embeddings)")
    args = parser.parse_args()
    source, output = pathlib.Path(args.source), pathlib.Path(args.output)

    config = json.loads((source / "config.json").read_text())
    layers = config["vision_feature_layer"]
    layers = layers if isinstance(layers, list) else [layers]
    if args.layer in layers:
        raise SystemExit(f"{source}: vision_feature_layer {layers} already holds {args.layer}")
    config["vision_feature_layer"] = layers + [args.layer]

    weights = load_file(str(source / "model.safetensors"))
    name = next(k for k in weights if k.endswith("multi_modal_projector.linear_1.weight"))
    first = weights[name]  # (projector hidden, vision hidden · len(layers))
    if first.dtype != np.float32:
        raise SystemExit(f"{source}: {name} is {first.dtype}; convert the checkpoint to float32 first")
    vision_hidden = config["vision_config"]["hidden_size"]
    if first.shape[1] != vision_hidden * len(layers):
        raise SystemExit(f"{source}: {name} has {first.shape[1]} inputs, expected {vision_hidden} × {len(layers)}")
    weights[name] = np.concatenate([first, np.zeros((first.shape[0], vision_hidden), np.float32)], axis=1)

    output.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name not in ("config.json", "model.safetensors") and item.is_file():
            shutil.copy(item, output / item.name)
    (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, str(output / "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {output}: vision_feature_layer {config['vision_feature_layer']}, {name} {weights[name].shape}")


if __name__ == "__main__":
    main()
