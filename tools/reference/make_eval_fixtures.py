"""A small benchmark fixture in LLaVA-1.5's real evaluation formats (POPE, ScienceQA-IMG, MMBench-dev)
and the answers transformers gives on it with tiny-llava, with and without PyramidDrop.

    python tools/reference/make_eval_fixtures.py [--model DIR]

Writes Tests/Fixtures/eval/ (deterministically: every image is a byte copy of a committed fixture):
  pope/llava_pope_test.jsonl                 6 questions (2 per category), LLaVA question jsonl
  pope/coco/coco_pope_{adversarial,popular,random}.json   their labels, matched by order
  pope/images/{chelsea,coffee}.jpg
  scienceqa/llava_test_CQM-A.json            3 problems (2 with an image, 1 text-only)
  scienceqa/images/{1,2}/image.png
  mmbench/mmbench_dev.tsv                    2 questions + their circular rotations (7 rows),
                                             images as base64 in the `image` column
  reference-answers.json                     the answers, see README.md there

The prompts follow LLaVA's scripts (haotian-liu/LLaVA llava/eval/model_vqa_loader.py,
model_vqa_science.py and model_vqa_mmbench.py, both with --single-pred-prompt, lang en) for the
user turn, then llava-hf's LLaVA-1.5 format "USER: {turn} ASSISTANT:" (no system prompt). Each
question runs through LlavaProcessor + LlavaForConditionalGeneration (fp32) from tiny-llava, built
as make_llava_fixtures.py builds them: greedy, at most 12 new tokens, stopping at EOS. Setting
`none` is model.generate; setting `pdrop` is pdrop_reference.run (layers [2, 4, 6], ratios
[0.5, 0.25, 0.125], positions reindex). pdrop_reference.run without reduction must give exactly
generate's tokens on every question (asserted). Run after make_llava_fixtures.py.
"""
import argparse
import base64
import io
import json
import math
import os
import shutil
import sys

import pandas as pd
import PIL
import tokenizers
import torch
import transformers
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pdrop_reference as ref  # noqa: E402
from common import FIXTURES  # noqa: E402

DEFAULT_MODEL = os.path.normpath(os.path.join(FIXTURES, "tiny-llava"))
EVAL = os.path.normpath(os.path.join(FIXTURES, "eval"))
MAX_NEW_TOKENS = 12
SCHEDULE = {"layers": [2, 4, 6], "ratios": [0.5, 0.25, 0.125], "positions": "reindex"}
# Same CLIPImageProcessor settings as make_llava_fixtures.py (llava-hf's preprocessor_config.json).
PREPROCESSOR = {
    "crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336},
}

# LLaVA's constants (llava/eval/*.py).
POPE_SUFFIX = "\nAnswer the question using a single word or phrase."
SINGLE_PRED_PROMPT = "Answer with the option's letter from the given choices directly."
IMAGE = "<image>"
ALL_OPTIONS = ["A", "B", "C", "D"]


def conversation(turn):
    """llava-hf's LLaVA-1.5 prompt: one user turn, no system prompt."""
    return "USER: " + turn + " ASSISTANT:"


# --------------------------------------------------------------------------------------------
# The fixture
# --------------------------------------------------------------------------------------------

# POPE: category order and question ids as in the real llava_pope_test.jsonl (adversarial 1...,
# random 10000001..., popular 20000001...); the label files number their own questions from 1.
POPE = [
    # (category, question id, image, question without suffix, label)
    ("adversarial", 1, "chelsea.jpg", "Is there a cat in the image?", "yes"),
    ("adversarial", 2, "chelsea.jpg", "Is there a dog in the image?", "no"),
    ("random", 10000001, "coffee.jpg", "Is there a cup in the image?", "yes"),
    ("random", 10000002, "coffee.jpg", "Is there a giraffe in the image?", "no"),
    ("popular", 20000001, "chelsea.jpg", "Is there a bowl in the image?", "no"),
    ("popular", 20000002, "coffee.jpg", "Is there a spoon in the image?", "yes"),
]
POPE_IMAGES = {"chelsea.jpg": "training/images/chelsea.jpg", "coffee.jpg": "training/images/coffee.jpg"}

# ScienceQA: the human turn as in the real llava_test_CQM-A.json ("Context: ..." line when the
# problem has a context, the question, then "A. ..." option lines; "<image>\n" first with an image).
SCIENCEQA = [
    {"id": "1", "image": "1/image.png",
     "conversations": [
         {"from": "human", "value": "<image>\nContext: The picture shows a person in a white suit.\n"
                                    "Which job does this person most likely have?\n"
                                    "A. firefighter\nB. astronaut\nC. diver"},
         {"from": "gpt", "value": "B"}]},
    {"id": "2", "image": "2/image.png",
     "conversations": [
         {"from": "human", "value": "<image>\nWhat is in the cup?\nA. coffee\nB. sand"},
         {"from": "gpt", "value": "A"}]},
    {"id": "3",
     "conversations": [
         {"from": "human", "value": "Context: Select the better estimate.\n"
                                    "How long does it take to drink a cup of coffee?\nA. 10 minutes\nB. 10 days"},
         {"from": "gpt", "value": "A"}]},
]
SCIENCEQA_IMAGES = {"1/image.png": "training/images/astronaut.png", "2/image.png": "anyres/coffee-small-80x60.png"}

# MMBench: the official dev TSV's columns; rotations k = 1.. of a question with n options are
# rows with index k * 1,000,000 + index, options rotated left by k (A = old option k), the answer
# letter moved with its option.
MMBENCH_COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category",
                   "split", "image"]
MMBENCH = [
    {"index": 1, "question": "What is most likely in the cup?",
     "hint": "The picture shows a drink served on a table.",
     "options": ["orange juice", "coffee", "milk", "water"], "answer": "B",
     "category": "image_scene", "l2-category": "coarse_perception", "image": "anyres/coffee-small-80x60.png"},
    {"index": 2, "question": "Which object is shown in the image?", "hint": "",
     "options": ["a bicycle", "a mountain", "a cup"], "answer": "C",
     "category": "image_topic", "l2-category": "coarse_perception", "image": "training/images/coffee.jpg"},
]


def copy_image(source, destination):
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    shutil.copyfile(os.path.join(FIXTURES, source), destination)


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def write_pope():
    root = os.path.join(EVAL, "pope")
    write_jsonl(os.path.join(root, "llava_pope_test.jsonl"),
                [{"question_id": qid, "image": image, "text": text + POPE_SUFFIX, "category": category}
                 for category, qid, image, text, _ in POPE])
    for category in ("adversarial", "popular", "random"):
        rows = [(image, text, label) for c, _, image, text, label in POPE if c == category]
        write_jsonl(os.path.join(root, "coco", f"coco_pope_{category}.json"),
                    [{"question_id": n, "image": image, "text": text, "label": label}
                     for n, (image, text, label) in enumerate(rows, start=1)])
    for name, source in POPE_IMAGES.items():
        copy_image(source, os.path.join(root, "images", name))


def write_scienceqa():
    root = os.path.join(EVAL, "scienceqa")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "llava_test_CQM-A.json"), "w") as f:
        json.dump(SCIENCEQA, f, indent=1)       # as the real file (indent 1, ASCII escapes)
        f.write("\n")
    for name, source in SCIENCEQA_IMAGES.items():
        copy_image(source, os.path.join(root, "images", name))


def mmbench_rows():
    """Every question, then its rotations k = 1, then k = 2, ... (the real file puts the rotations
    after the originals)."""
    rows = []
    most = max(len(q["options"]) for q in MMBENCH)
    for k in range(most):
        for q in MMBENCH:
            n = len(q["options"])
            if k >= n:
                continue
            options = q["options"][k:] + q["options"][:k]
            answer = ALL_OPTIONS[(ALL_OPTIONS.index(q["answer"]) - k) % n]
            with open(os.path.join(FIXTURES, q["image"]), "rb") as f:
                image = base64.b64encode(f.read()).decode("ascii")
            cells = {"index": str(k * 1_000_000 + q["index"]), "question": q["question"], "hint": q["hint"],
                     "answer": answer, "category": q["category"], "l2-category": q["l2-category"],
                     "split": "dev", "image": image}
            for letter, option in zip(ALL_OPTIONS, options + [""] * (4 - n)):
                cells[letter] = option
            rows.append(cells)
    return rows


def write_mmbench():
    root = os.path.join(EVAL, "mmbench")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "mmbench_dev.tsv"), "w", newline="") as f:
        f.write("\t".join(MMBENCH_COLUMNS) + "\n")
        for cells in mmbench_rows():
            assert not any(c in v for v in cells.values() for c in "\t\n\"")
            f.write("\t".join(cells[c] for c in MMBENCH_COLUMNS) + "\n")


# --------------------------------------------------------------------------------------------
# The questions as LLaVA's scripts read them
# --------------------------------------------------------------------------------------------

def pope_questions():
    """model_vqa_loader.py: qs = "<image>\\n" + line["text"]; image opened and .convert('RGB');
    answers-file prompt = line["text"]."""
    root = os.path.join(EVAL, "pope")
    questions = [json.loads(q) for q in open(os.path.join(root, "llava_pope_test.jsonl"))]
    for line in questions:
        yield {"benchmark": "pope", "question_id": line["question_id"], "turn": IMAGE + "\n" + line["text"],
               "answers_file_prompt": line["text"], "image_file": "pope/images/" + line["image"],
               "image": Image.open(os.path.join(root, "images", line["image"])).convert("RGB")}


def scienceqa_questions():
    """model_vqa_science.py --single-pred-prompt: qs = value.replace('<image>', '').strip();
    with an image qs = "<image>\\n" + qs (image opened without convert); then qs += "\\n" + the
    single-prediction prompt. Answers-file prompt ("cur_prompt") = the same string."""
    root = os.path.join(EVAL, "scienceqa")
    questions = json.load(open(os.path.join(root, "llava_test_CQM-A.json")))
    for line in questions:
        qs = line["conversations"][0]["value"].replace(IMAGE, "").strip()
        cur_prompt = qs
        image, image_file = None, None
        if "image" in line:
            image_file = "scienceqa/images/" + line["image"]
            image = Image.open(os.path.join(root, "images", line["image"]))
            qs = IMAGE + "\n" + qs
            cur_prompt = "<image>" + "\n" + cur_prompt
        qs = qs + "\n" + SINGLE_PRED_PROMPT
        cur_prompt = cur_prompt + "\n" + SINGLE_PRED_PROMPT
        yield {"benchmark": "scienceqa", "question_id": line["id"], "turn": qs, "answers_file_prompt": cur_prompt,
               "image_file": image_file, "image": image}


def is_none(value):
    """model_vqa_mmbench.py's is_none."""
    if value is None:
        return True
    if type(value) is float and math.isnan(value):
        return True
    if type(value) is str and value.lower() == "nan":
        return True
    if type(value) is str and value.lower() == "none":
        return True
    return False


def get_options(row, options):
    """model_vqa_mmbench.py's get_options: stops at the first empty option."""
    parsed_options = []
    for option in options:
        option_value = row[option]
        if is_none(option_value):
            break
        parsed_options.append(option_value)
    return parsed_options


def mmbench_questions():
    """model_vqa_mmbench.py --single-pred-prompt --lang en, one round per row (no --all-rounds):
    the TSV read with pandas.read_table; hint + "\\n" + question when the hint is not none; then
    "\\n" + letter + ". " + option per option; qs = "<image>\\n" + question + "\\n" + the
    single-prediction prompt; image = load_image_from_base64 (no convert). Answers-file prompt =
    the question with hint and options."""
    questions = pd.read_table(os.path.join(EVAL, "mmbench", "mmbench_dev.tsv"))
    for index, row in questions.iterrows():
        options = get_options(row, ALL_OPTIONS)
        idx = row["index"]
        question = row["question"]
        hint = row["hint"]
        image = Image.open(io.BytesIO(base64.b64decode(row["image"])))
        if not is_none(hint):
            question = hint + "\n" + question
        for option_char, option in zip(ALL_OPTIONS[:len(options)], options):
            question = question + "\n" + option_char + ". " + option
        qs = cur_prompt = question
        qs = IMAGE + "\n" + qs
        qs = qs + "\n" + SINGLE_PRED_PROMPT
        yield {"benchmark": "mmbench", "question_id": int(idx), "turn": qs, "answers_file_prompt": cur_prompt,
               "image_file": f"mmbench/mmbench_dev.tsv (row index {int(idx)}, base64)", "image": image}


# --------------------------------------------------------------------------------------------
# The answers
# --------------------------------------------------------------------------------------------

def build_processor(model_dir):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(**PREPROCESSOR), tokenizer=tokenizer,
                               patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    return tokenizer, processor


def decode(tokenizer, tokens):
    """LLaVA: tokenizer.batch_decode(output_ids, skip_special_tokens=True)[0].strip() (output_ids
    holds only the new tokens there)."""
    return tokenizer.batch_decode([tokens], skip_special_tokens=True)[0].strip()


def until_eos(tokens, eos):
    """The tokens generate returns: up to and including the first EOS."""
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def smallest_margin(result, count):
    """Smallest top-1 minus top-2 logit over the steps that chose the `count` tokens kept."""
    steps = [result["logits_last"][0]] + result["decode_logits"]
    return min((lambda v: (v[0] - v[1]).item())(torch.topk(l, 2).values) for l in steps[:count])


def smallest_kept_gap(result):
    """Smallest relative gap between the last kept and the first dropped score at any drop."""
    gaps = []
    for kept_blocks, score_blocks in zip(result["kept"], result["scores"]):
        for kept, scores in zip(kept_blocks, score_blocks):
            if kept.numel() < scores.numel():
                v = torch.sort(scores, descending=True).values
                n = kept.numel()
                gaps.append(((v[n - 1] - v[n]) / v[n - 1]).item())
    return min(gaps) if gaps else None


def answer_all(model_dir):
    tokenizer, processor = build_processor(model_dir)
    eos = tokenizer.eos_token_id
    generator = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    eager = ref.load_model(model_dir)
    fast = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    answers = {"none": [], "pdrop": []}
    checks = {"none_layer_by_layer_equals_generate": True}
    for question in [*pope_questions(), *scienceqa_questions(), *mmbench_questions()]:
        prompt = conversation(question["turn"])
        image = question["image"]
        inputs = processor(images=image, text=prompt, return_tensors="pt") if image is not None \
            else processor(text=prompt, return_tensors="pt")
        input_ids = inputs["input_ids"].to(torch.long)
        pixel_values = inputs["pixel_values"].to(torch.float32) if image is not None else None
        # The processor's ids are what the tokenizers library gives for the expanded prompt.
        assert fast.encode(prompt.replace(IMAGE, IMAGE * 576)).ids == input_ids[0].tolist()
        T = input_ids.shape[1]

        with torch.no_grad():
            extra = {"pixel_values": pixel_values} if pixel_values is not None else {}
            out = generator.generate(input_ids=input_ids, attention_mask=inputs["attention_mask"], **extra,
                                     do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS,
                                     eos_token_id=eos, pad_token_id=generator.config.pad_token_id)
        generated = out[0, T:].tolist()

        runs = {"none": ref.run(eager, input_ids, pixel_values, "none", greedy_steps=MAX_NEW_TOKENS),
                "pdrop": ref.run(eager, input_ids, pixel_values, "pdrop", layers=SCHEDULE["layers"],
                                 ratios=SCHEDULE["ratios"], positions=SCHEDULE["positions"],
                                 greedy_steps=MAX_NEW_TOKENS)}
        none_tokens = until_eos(runs["none"]["greedy_tokens"].tolist(), eos)
        assert none_tokens == generated, (question["question_id"], none_tokens, generated)
        for setting, result in runs.items():
            tokens = until_eos(result["greedy_tokens"].tolist(), eos)
            entry = {"question_id": question["question_id"], "benchmark": question["benchmark"],
                     "prompt": prompt, "text": decode(tokenizer, tokens), "tokens": tokens,
                     "answers_file_prompt": question["answers_file_prompt"], "image": question["image_file"],
                     "prompt_length": T, "image_tokens": int((input_ids == eager.config.image_token_id).sum()),
                     "cache_lengths": result["cache_lengths"].tolist(),
                     "min_top2_logit_margin": smallest_margin(result, len(tokens))}
            if setting == "pdrop":
                entry["min_kept_boundary_relative_gap"] = smallest_kept_gap(result)
            answers[setting].append(entry)
        for setting in answers:
            checks[f"{setting}_min_top2_logit_margin"] = min(checks.get(f"{setting}_min_top2_logit_margin", math.inf),
                                                            answers[setting][-1]["min_top2_logit_margin"])
        gap = answers["pdrop"][-1]["min_kept_boundary_relative_gap"]
        if gap is not None:
            checks["pdrop_min_kept_boundary_relative_gap"] = min(checks.get("pdrop_min_kept_boundary_relative_gap",
                                                                            math.inf), gap)
        print(f"{question['benchmark']:9} {str(question['question_id']):>8}  T={T:4}  none={answers['none'][-1]['text']!r}"
              f"  pdrop={answers['pdrop'][-1]['text']!r}", flush=True)
    # Robust enough for an fp32 engine (logits agree to ~1e-5, scores to ~1e-6 relative): the
    # questions were chosen so that no greedy choice and no kept set sits on a near tie.
    assert checks["none_min_top2_logit_margin"] >= 1e-4 and checks["pdrop_min_top2_logit_margin"] >= 1e-4, checks
    assert checks["pdrop_min_kept_boundary_relative_gap"] >= 1e-4, checks
    return answers, checks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    torch.manual_seed(0)
    write_pope()
    write_scienceqa()
    write_mmbench()
    answers, checks = answer_all(args.model)
    reference = {
        "source": "tools/reference/make_eval_fixtures.py",
        "model": "Tests/Fixtures/tiny-llava",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "pillow": PIL.__version__, "pandas": pd.__version__},
        "prompt_format": "USER: {turn} ASSISTANT:",
        "generation": {"greedy": True, "max_new_tokens": MAX_NEW_TOKENS, "stop": "EOS (id 2), kept in tokens",
                       "decode": "batch_decode(tokens, skip_special_tokens=True)[0].strip()"},
        "settings": {
            "none": "LlavaForConditionalGeneration.generate (fp32, default sdpa attention); pdrop_reference.run "
                    "with no reduction (eager) gives the same tokens on every question",
            "pdrop": dict(SCHEDULE, implementation="pdrop_reference.run (fp32, eager), decode positions = "
                                                  "each layer's cache length"),
        },
        "checks": checks,
        "answers": answers,
    }
    with open(os.path.join(EVAL, "reference-answers.json"), "w") as f:
        json.dump(reference, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
