#!/usr/bin/env bash
# `make demo-model`: the task model of docs/QUALITY.md, from nothing. Generates the data (scenes
# and MNIST digit grids, training and held-out seeds), cuts LLaMA's tokenizer down to the data's
# tokens, initialises tools/task-model/config.json with transformers' rules (the vision tower's
# position embedding as a 2-D sine-cosine table, `--vision-positions sincos`), trains every part
# with PyramidDrop (and, for the study's part 4, the same run without it to the comparison step),
# and writes the bf16 checkpoint that `make demo` uses. Each stage is skipped when its output
# exists and training resumes from its last save, so an interrupted run continues where it was.
# Usage: scripts/make-task-model.sh PDROP WORK_DIR MODEL_DIR
set -euo pipefail
pdrop=$1 work=$2 model=$3
# The study's part 4 compares the runs with and without PyramidDrop at step $compare_at. The
# first cosine schedule spans $schedule_steps steps and ran all of them; the committed model then
# ran a second schedule of $second_steps steps from there (the loss was still falling).
compare_at=300 schedule_steps=2400 last_step=2400 second_steps=1800
mkdir -p "$work/data"
scripts/fetch-mnist.sh

generate() {  # task folder count seed [questions-per-image [more options]]
    [ -f "$2/answers.json" ] || "$pdrop" data "$1" --count "$3" --seed "$4" --questions-per-image "${5:-10}" --output "$2" "${@:6}"
}
generate scenes "$work/data/train-scenes" 5000 1
generate digits "$work/data/train-digits" 1500 2
# The curriculum: scenes of one and of three objects, mixed into the training set, give the
# look-up a question needs (find the named colour, read its shape or place) a clear signal.
generate scenes "$work/data/train-singles" 2000 3 6 --objects 1
generate scenes "$work/data/train-triples" 2000 4 8 --objects 3
generate scenes "$work/data/heldout-scenes" 100 101
generate digits "$work/data/heldout-digits" 50 102
[ -f "$work/train/answers.json" ] || "$pdrop" data merge "$work/data/train-scenes" "$work/data/train-digits" "$work/data/train-singles" \
    "$work/data/train-triples" --output "$work/train"
[ -f "$work/heldout/answers.json" ] || "$pdrop" data merge "$work/data/heldout-scenes" "$work/data/heldout-digits" --output "$work/heldout"
[ -f "$work/tokenizer/tokenizer.json" ] || "$pdrop" data vocabulary --tokenizer Tests/Fixtures/tiny-llava --data "$work/train" --output "$work/tokenizer"
[ -f "$work/init/model.safetensors" ] || "$pdrop" init --config tools/task-model/config.json --tokenizer "$work/tokenizer" --output "$work/init" --seed 0 --vision-positions sincos

common=(--data "$work/train/train.json" --images "$work/train/images" --batch-size 8 --lr 3e-4 --warmup-steps 100
        --train all --template llava_1.5 --save-every 100)
train() {  # reduction run-folder stop-at-step start-model [flags]: starts from the model, or resumes from the folder's last save
    local start=(--model "$4")
    [ -f "$2/trainer_state.safetensors" ] && start=(--resume "$2")
    "$pdrop" train "${start[@]}" "${common[@]}" "${@:5}" --reduction "$1" --output "$2" --stop-at-step "$3"
}
first=(--steps $schedule_steps --shuffle 1)
# With PyramidDrop to the comparison step (kept for the study's part 4), then on to the last
# step; the same run without PyramidDrop to the comparison step.
[ -d "$work/pdrop-step$compare_at" ] || { train pdrop "$work/run-pdrop" "$compare_at" "$work/init" "${first[@]}"; cp -r "$work/run-pdrop" "$work/pdrop-step$compare_at"; }
train pdrop "$work/run-pdrop" "$last_step" "$work/init" "${first[@]}"
[ -d "$work/none-step$compare_at" ] || { train none "$work/run-none" "$compare_at" "$work/init" "${first[@]}"; cp -r "$work/run-none" "$work/none-step$compare_at"; }
# The second phase: a warm restart (fresh AdamW state, warm-up, a new cosine schedule over
# $second_steps steps, another shuffle) from the first phase's last weights, with PyramidDrop.
train pdrop "$work/run-pdrop-2" "$second_steps" "$work/run-pdrop" --steps $second_steps --shuffle 2

rm -rf "$model"
"$pdrop" convert --model "$work/run-pdrop-2" --output "$model" --dtype bfloat16
cp "$work/run-pdrop/training_log.jsonl" "$model/training_log_phase1.jsonl"
cp "$work/run-pdrop-2/training_log.jsonl" "$model/training_log.jsonl"
# A fresh answers file: `eval run` would resume one answered by an earlier model.
rm -f "$work/heldout-answers.jsonl"
"$pdrop" eval run --model "$model" --benchmark gqa --questions "$work/heldout/questions.jsonl" --images "$work/heldout/images" \
    --answers-file "$work/heldout-answers.jsonl" --reduction none --max-new-tokens 8
"$pdrop" eval score --benchmark gqa --questions "$work/heldout/answers.json" --answers "$work/heldout-answers.jsonl"
