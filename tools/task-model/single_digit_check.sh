#!/usr/bin/env bash
# The single-digit diagnostic (models/README.md): the task model's initialisation trained for 300
# steps on single MNIST digits that fill the image, once with every part training (`--train all`,
# the task model's recipe) and once with the vision tower frozen at its initialisation
# (`--train projector,language`), each scored on 1,000 held-out digits (chance: 10%).
# About 15 minutes on 2 cores. Usage: tools/task-model/single_digit_check.sh [WORK_DIR]
set -euo pipefail
pdrop=.build/release/pdrop python=tools/reference/.venv/bin/python work=${1:-.build/single-digit-check}
scripts/fetch-mnist.sh
mkdir -p "$work"
[ -f "$work/data/train.json" ] || "$python" tools/task-model/single_digit_check.py --mnist .build/mnist/mnist_5k.csv.gz --output "$work/data"
[ -f "$work/init/model.safetensors" ] || "$pdrop" init --config tools/task-model/config.json --tokenizer models/llava-task-7m \
    --output "$work/init" --seed 0 --vision-positions sincos
for parts in all projector,language; do
    run="$work/run-${parts//,/-}"
    [ -f "$run/model.safetensors" ] || "$pdrop" train --model "$work/init" --data "$work/data/train.json" --images "$work/data/images" \
        --batch-size 8 --lr 1e-3 --warmup-steps 30 --steps 300 --shuffle 1 --train "$parts" --template llava_1.5 \
        --reduction none --save-every 100 --output "$run"
    rm -f "$run/answers.jsonl"
    "$pdrop" eval run --model "$run" --benchmark gqa --questions "$work/data/questions.jsonl" --images "$work/data/images" \
        --answers-file "$run/answers.jsonl" --reduction none --max-new-tokens 4 > /dev/null
    echo "--train $parts: $("$pdrop" eval score --benchmark gqa --questions "$work/data/answers.json" --answers "$run/answers.jsonl" 2>&1 | head -1)"
done
