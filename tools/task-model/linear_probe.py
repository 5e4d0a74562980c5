"""Is where an object is, and its shape, readable from the image tokens the language model receives?

    python tools/task-model/linear_probe.py MODEL_DIR[,MODEL_DIR...] DATA_DIR

DATA_DIR is a one-object scene set (`pdrop data scenes --objects 1 --questions-per-image 7`):
each image has a left/right, a top/bottom and a shape question and the patches its object
covers (patches.jsonl). For every checkpoint, transformers computes the vision tower's layer -2
features (CLS dropped) and the projector's output for each image; the mean over the object's
patches is the probe's input. A linear classifier (ridge regression onto one-hot answers, λ = 1,
standardised inputs) is fitted on the first 70% of the images and scored on the rest. Accuracies
near 1 mean the information reaches the language model in a linear form; whether the language
model learns to read it is then a separate question (models/README.md).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import training_reference as tr  # noqa: E402

TYPES = ("left_right", "top_bottom", "shape")


def load_images(directory):
    """Image name → {question type: answer, "patches": object patches}."""
    answers = json.load(open(os.path.join(directory, "answers.json")))
    patches = {}
    for line in open(os.path.join(directory, "patches.jsonl")):
        record = json.loads(line)
        patches[record["question_id"]] = record["patches"]
    images = {}
    for line in open(os.path.join(directory, "questions.jsonl")):
        question = json.loads(line)
        answer = answers[str(question["question_id"])]
        if answer["type"] in TYPES:
            entry = images.setdefault(question["image"], {})
            entry[answer["type"]] = answer["answer"]
            entry["patches"] = patches[question["question_id"]]
    return {name: entry for name, entry in sorted(images.items()) if all(t in entry for t in TYPES)}


def probe_accuracy(features, labels, train_share=0.7, ridge=1.0):
    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    x = np.hstack([x, np.ones((len(x), 1))])
    classes = sorted(set(labels))
    y = np.array([[label == c for c in classes] for label in labels], dtype=np.float64)
    split = int(len(x) * train_share)
    weights = np.linalg.solve(x[:split].T @ x[:split] + ridge * np.eye(x.shape[1]), x[:split].T @ y[:split])
    return float(((x[split:] @ weights).argmax(1) == y[split:].argmax(1)).mean())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    images = load_images(sys.argv[2])
    if len(images) < 20:
        sys.exit(f"{sys.argv[2]}: {len(images)} images with all of {TYPES}; generate more (--questions-per-image 7)")
    torch.set_num_threads(1)
    for directory in sys.argv[1].split(","):
        model = tr.load_model(directory)
        processor = tr.image_processor_from(directory)
        vision, projected = [], []
        with torch.no_grad():
            for name, entry in images.items():
                pixels = tr.pixel_values_of(os.path.join(sys.argv[2], "images", name), processor)[None]
                hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][0, 1:]  # (patches, vision hidden)
                tokens = model.model.multi_modal_projector(hidden[None])[0]  # (patches, text hidden)
                vision.append(hidden[entry["patches"]].mean(0).numpy())
                projected.append(tokens[entry["patches"]].mean(0).numpy())
        for label, features in (("vision features", vision), ("image tokens", projected)):
            scores = ", ".join(f"{t} {probe_accuracy(features, [e[t] for e in images.values()]):.2f}" for t in TYPES)
            print(f"{directory}: {label}: {scores} ({len(images)} images, 30% held out)")


if __name__ == "__main__":
    main()
