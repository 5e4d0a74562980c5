#!/usr/bin/env bash
# The second half of `make demo`: the committed task model (trained here, models/README.md)
# answers questions about a freshly generated scene and digit grid under no reduction, FastV and
# PyramidDrop, each answer marked against the truth the generator knows; then the picture of
# what PyramidDrop kept for one question, its objects outlined.
# Usage: scripts/demo-task-model.sh PDROP MODEL OUTPUT_DIR
set -euo pipefail
pdrop=$1 model=$2 out=$3
rm -rf "$out" && mkdir -p "$out"
"$pdrop" data scenes --count 1 --seed 9001 --questions-per-image 6 --output "$out/scene" > /dev/null
sets=("$out/scene")
if scripts/fetch-mnist.sh > /dev/null 2>&1; then
    "$pdrop" data digits --count 1 --seed 9002 --questions-per-image 4 --output "$out/digits" > /dev/null
    sets+=("$out/digits")
else
    echo "(no MNIST digits: scripts/fetch-mnist.sh could not download them; scenes only)"
fi
right=0 asked=0
for set in "${sets[@]}"; do
    while IFS= read -r line; do
        id=$(sed -n 's/.*"question_id":\([0-9]*\).*/\1/p' <<< "$line")
        image=$(sed -n 's/.*"image":"\([^"]*\)".*/\1/p' <<< "$line")
        question=$(sed -n 's/.*"text":"\([^"]*\)".*/\1/p' <<< "$line")
        truth=$(sed -n "s/^\"$id\":{\"answer\":\"\([^\"]*\)\".*/\1/p" "$set/answers.json")
        echo "$image: $question (truth: $truth)"
        for reduction in none fastv pdrop; do
            answer=$("$pdrop" generate --model "$model" --image "$set/images/$image" --prompt "$question" \
                --max-new-tokens 4 --reduction "$reduction" 2> /dev/null)
            mark="wrong"
            if [ "$answer" = "$truth" ]; then mark="right"; right=$((right + 1)); fi
            asked=$((asked + 1))
            printf '    %-6s %-10s %s\n' "$reduction" "$answer" "$mark"
        done
    done < "$set/questions.jsonl"
done
echo "$right of $asked answers right"
first=$(head -1 "$out/scene/questions.jsonl")
"$pdrop" generate --model "$model" --image "$out/scene/images/$(sed -n 's/.*"image":"\([^"]*\)".*/\1/p' <<< "$first")" \
    --prompt "$(sed -n 's/.*"text":"\([^"]*\)".*/\1/p' <<< "$first")" --max-new-tokens 4 --save-kept "$out/kept-tokens.png" > /dev/null
echo "what PyramidDrop kept for the first question (one panel per stage): $out/kept-tokens.png"
