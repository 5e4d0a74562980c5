"""Checks the committed task model in transformers: LlavaForConditionalGeneration loads
models/llava-task-7m and answers held-out questions greedily; the answers must equal the ones
`pdrop eval run --reduction none` wrote for the same questions.

Usage: check_task_model.py MODEL_DIR HELDOUT_DIR PDROP_ANSWERS.jsonl [COUNT]
(HELDOUT_DIR as `pdrop data` writes it; COUNT questions, every n-th, default 200.)
"""
import json
import sys
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration

model_dir, heldout, answers_file = sys.argv[1:4]
count = int(sys.argv[4]) if len(sys.argv) > 4 else 200
torch.manual_seed(0)
model = LlavaForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
image_processor = AutoImageProcessor.from_pretrained(model_dir)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
# What LlavaProcessor does with patch_size set: one <image> per image token (196 here).
image_tokens = (model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2
questions = [json.loads(line) for line in (Path(heldout) / "questions.jsonl").read_text().splitlines()]
ours = {}
for line in Path(answers_file).read_text().splitlines():
    record = json.loads(line)
    ours[record["question_id"]] = record["text"]
step = max(1, len(questions) // count)
sample = [q for q in questions[::step] if q["question_id"] in ours][:count]
same = 0
for q in sample:
    image = Image.open(Path(heldout) / "images" / q["image"]).convert("RGB")
    prompt = "USER: " + "<image>" * image_tokens + f"\n{q['text']} ASSISTANT:"
    inputs = dict(tokenizer(prompt, return_tensors="pt"))
    inputs["pixel_values"] = image_processor(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False)  # as `pdrop eval study` answers
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    if text == ours[q["question_id"]]:
        same += 1
    else:
        print(f"question {q['question_id']}: transformers {text!r}, pdrop {ours[q['question_id']]!r}")
print(f"{same} of {len(sample)} greedy answers equal")
sys.exit(0 if same == len(sample) else 1)
