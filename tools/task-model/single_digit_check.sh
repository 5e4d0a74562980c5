#!/usr/bin/env bash
# The single-digit diagnostic (models/README.md): the task model's initialisation trained for 300
# steps on single MNIST digits that fill the image, with every part training at 1e-3 (`--train
# all`), with the vision tower frozen at its initialisation (`--train projector,language`), and
# with every part training but the tower at its own lower rate (`--vision-lr 1e-4`, `3e-5`), each
# scored on 1,000 held-out digits (chance: 10%). About 30 minutes on 2 cores. Usage: tools/task-model/single_digit_check.sh [WORK_DIR]
set -euo pipefail
pdrop=.build/release/pdrop python=tools/reference/.venv/bin/python work=${1:-.build/single-digit-check}
scripts/fetch-mnist.sh
mkdir -p "$work"
[ -f "$work/data/train.json" ] || "$python" tools/task-model/single_digit_check.py --mnist .build/mnist/mnist_5k.csv.gz --output "$work/data"
[ -f "$work/init/model.safetensors" ] || "$pdrop" init --config tools/task-model/config.json --tokenizer models/llava-task-7m \
    --output "$work/init" --seed 0 --vision-positions sincos
# Each variant: a run folder name and its flags.
for variant in "all:--train all" "projector-language:--train projector,language" "all-vlr1e-4:--train all --vision-lr 1e-4" \
               "all-vlr3e-5:--train all --vision-lr 3e-5"; do
    name=${variant%%:*} flags=${variant#*:}
    run="$work/run-$name"
    # shellcheck disable=SC2086  # the flags are words
    [ -f "$run/model.safetensors" ] || "$pdrop" train --model "$work/init" --data "$work/data/train.json" --images "$work/data/images" \
        --batch-size 8 --lr 1e-3 --warmup-steps 30 --steps 300 --shuffle 1 $flags --template llava_1.5 \
        --reduction none --save-every 100 --output "$run"
    rm -f "$run/answers.jsonl"
    "$pdrop" eval run --model "$run" --benchmark gqa --questions "$work/data/questions.jsonl" --images "$work/data/images" \
        --answers-file "$run/answers.jsonl" --reduction none --max-new-tokens 4 > /dev/null
    echo "$flags: $("$pdrop" eval score --benchmark gqa --questions "$work/data/answers.json" --answers "$run/answers.jsonl" 2>&1 | head -1)"
done
