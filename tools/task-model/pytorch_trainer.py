"""The task model's recipe in PyTorch + transformers, as a control for `pdrop train` (models/README.md):
from the same initial checkpoint (`pdrop init`), on the same records (`pdrop data`), with the same
template (llava_1.5: `USER: <image>\\n{question} ASSISTANT: {answer}</s>` per turn, the answers
learned), AdamW with the vision tower as its own group (`--vision-lr`), a linear warm-up then cosine,
gradient clipping at 1.0, batch 8, fp32. Every --eval-every steps it scores the held-out records
teacher-forced (an answer counts when every one of its tokens is the argmax) per question type,
and lists the commonest answers of each type (one answer for every question = the prior).

    tools/reference/.venv/bin/python tools/task-model/pytorch_trainer.py --model INIT --data TRAIN_DIR \\
        --heldout HELDOUT_DIR --steps 3000 --lr 1e-3 --vision-lr 1e-4 [--eval-every 500]
"""
import argparse
import collections
import json
import random
import time

import torch
from PIL import Image
from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

KINDS = [("furthest", "furthest_shape"), ("closest", "closest_colour"), ("same shape", "same_shape_count"), ("shape of", "shape"),
         ("left or the right", "left_right"), ("top or the bottom", "top_bottom"), ("How many", "count"), ("Which digit", "digit_at"),
         ("sum of", "row_sum"), ("Where is the digit", "where"), ("Describe", "description"), ("Read the grid", "description")]


def kind(question):
    return next((name for key, name in KINDS if key in question), "other")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a `pdrop data` directory: train.json and images/")
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--vision-lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    processor = CLIPImageProcessor.from_pretrained(args.model)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{args.model}/tokenizer.json")
    image_tokens, image_id = model.config.image_seq_length, model.config.image_token_index
    pad = model.config.text_config.pad_token_id

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def build(record):
        """ids, labels (-100 where not learned) and each answer's (start, end, type)."""
        ids, labels, answers = [1], [-100], []
        turns = record["conversations"]
        for i in range(0, len(turns), 2):
            for j, part in enumerate(("USER: " + turns[i]["value"] + " ").split("<image>")):
                if j:
                    ids += [image_id] * image_tokens
                    labels += [-100] * image_tokens
                ids += encode(part)
                labels += [-100] * len(encode(part))
            prompt = encode("ASSISTANT:")
            ids += prompt
            labels += [-100] * len(prompt)
            answer = encode(" " + turns[i + 1]["value"]) + [2]
            answers.append((len(ids), len(ids) + len(answer), kind(turns[i]["value"])))
            ids += answer
            labels += answer
        return ids, labels, answers

    def batch(records, directory):
        built = [build(r) for r in records]
        length = max(len(b[0]) for b in built)
        ids = torch.full((len(records), length), pad)
        labels = torch.full((len(records), length), -100)
        mask = torch.zeros((len(records), length), dtype=torch.long)
        for row, (x, y, _) in enumerate(built):
            ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = torch.tensor(x), torch.tensor(y), 1
        pixels = torch.stack([processor(Image.open(f"{directory}/images/{r['image']}").convert("RGB"), return_tensors="pt")["pixel_values"][0]
                              for r in records])
        return ids, labels, mask, pixels, built

    train = json.load(open(f"{args.data}/train.json"))
    heldout = json.load(open(f"{args.heldout}/train.json"))
    vision = [p for n, p in model.named_parameters() if "vision_tower" in n]
    vision_ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in vision_ids]
    optimizer = torch.optim.AdamW([{"params": rest, "lr": args.lr}, {"params": vision, "lr": args.vision_lr}], weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.steps)

    def evaluate():
        model.eval()
        right, total, given = collections.Counter(), collections.Counter(), collections.defaultdict(collections.Counter)
        with torch.no_grad():
            for start in range(0, len(heldout), 8):
                ids, _, mask, pixels, built = batch(heldout[start:start + 8], args.heldout)
                predicted = model(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits.argmax(-1)
                for row, (_, _, answers) in enumerate(built):
                    for begin, end, name in answers:
                        guess = predicted[row, begin - 1:end - 1]
                        right[name] += bool((guess == ids[row, begin:end]).all())
                        total[name] += 1
                        given[name][tokenizer.decode(guess.tolist()).strip()] += 1
        model.train()
        return ({name: round(100 * right[name] / total[name], 1) for name in sorted(total)},
                {name: given[name].most_common(3) for name in sorted(given)})

    order, position, started, losses = list(range(len(train))), 0, time.time(), []
    random.Random(args.seed).shuffle(order)
    model.train()
    for step in range(1, args.steps + 1):
        records = [train[order[(position + i) % len(order)]] for i in range(args.batch_size)]
        position += args.batch_size
        ids, labels, mask, pixels, _ = batch(records, args.data)
        loss = model(input_ids=ids, pixel_values=pixels, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            scores, answers = evaluate()
            print(json.dumps({"step": step, "loss": round(sum(losses[-100:]) / len(losses[-100:]), 4),
                              "seconds": round(time.time() - started), "heldout": scores, "answers": answers}), flush=True)


if __name__ == "__main__":
    main()
