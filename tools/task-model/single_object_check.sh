#!/usr/bin/env bash
# The single-object diagnostic (models/README.md): scenes of ONE object (`pdrop data scenes
# --objects 1`, 4,000 for training, seed 3; 40 held out, seed 103; six questions each, the
# description last), the task model's initialisation trained 300 steps with every part training
# (the tower at --vision-lr 1e-4, the setting that learns single digits), then scored per question
# type, with the answers the model gives for each type (a single answer means it answers from the
# prior, without reading the image). About 10 minutes on 2 cores.
# Usage: tools/task-model/single_object_check.sh [WORK_DIR]
set -euo pipefail
pdrop=.build/release/pdrop work=${1:-.build/single-object-check}
mkdir -p "$work"
[ -f "$work/train/answers.json" ] || "$pdrop" data scenes --count 4000 --seed 3 --questions-per-image 6 --objects 1 --output "$work/train" > /dev/null
[ -f "$work/heldout/answers.json" ] || "$pdrop" data scenes --count 40 --seed 103 --questions-per-image 6 --objects 1 --output "$work/heldout" > /dev/null
[ -f "$work/init/model.safetensors" ] || "$pdrop" init --config tools/task-model/config.json --tokenizer models/llava-task-7m \
    --output "$work/init" --seed 0 --vision-positions sincos
run="$work/run"
[ -f "$run/model.safetensors" ] || "$pdrop" train --model "$work/init" --data "$work/train/train.json" --images "$work/train/images" \
    --batch-size 8 --lr 1e-3 --vision-lr 1e-4 --warmup-steps 30 --steps 300 --shuffle 1 --train all --template llava_1.5 \
    --reduction none --save-every 100 --output "$run"
rm -f "$run/answers.jsonl"
"$pdrop" eval run --model "$run" --benchmark gqa --questions "$work/heldout/questions.jsonl" --images "$work/heldout/images" \
    --answers-file "$run/answers.jsonl" --reduction none --max-new-tokens 4 > /dev/null
"$pdrop" eval score --benchmark gqa --questions "$work/heldout/answers.json" --answers "$run/answers.jsonl"
python3 - "$work/heldout/answers.json" "$run/answers.jsonl" <<'PY'
import collections, json, sys
truth = json.load(open(sys.argv[1]))
given = collections.defaultdict(collections.Counter)
for line in open(sys.argv[2]):
    answer = json.loads(line)
    given[truth[str(answer["question_id"])]["type"]][answer["text"].strip()] += 1
for kind in sorted(given):
    print(f"  answers to {kind}: " + ", ".join(f"{text} ×{count}" for text, count in given[kind].most_common()))
PY
# The description, asked as the training records ask it (after the six questions and their true
# answers), for the first 8 held-out images: which of colour, shape and place does it read?
python3 - "$work/heldout/train.json" 8 <<'PY' | while IFS=$'\t' read -r image prompt truth; do
import json, sys
for record in json.load(open(sys.argv[1]))[: int(sys.argv[2])]:
    turns = record["conversations"]
    prompt = "".join(f"USER: {turns[i]['value']} ASSISTANT: {turns[i + 1]['value']}</s>" for i in range(0, len(turns) - 2, 2))
    prompt += f"USER: {turns[-2]['value']} ASSISTANT:"
    print(record["image"], prompt.replace("\n", "\\n"), turns[-1]["value"], sep="\t")  # one line each: newlines escaped
PY
    prompt=${prompt//\\n/$'\n'}
    echo "  description: true \"$truth\", given \"$("$pdrop" generate --model "$run" --image "$work/heldout/images/$image" \
        --raw-prompt "$prompt" --max-new-tokens 10 --reduction none 2> /dev/null)\""
done
