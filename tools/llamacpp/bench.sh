#!/usr/bin/env bash
# Side by side with llama.cpp on the same weights and threads (issue 17): builds llama.cpp from the
# source that the llama-cpp-python sdist on PyPI vendors (cmake from PyPI, -DGGML_NATIVE=ON), writes
# one random TinyLlama-1.1B-shape checkpoint as HF safetensors and as GGUF (make_random_llama.py),
# quantizes it to Q8_0 with llama.cpp's llama-quantize and with `pdrop quantize`, then times a
# 616-token prompt (LLaVA-1.5's 576 image tokens + 40) and 64 tokens decoded after it, interleaving the two
# engines, best of ROUNDS. Writes .build/llamacpp/results.json and prints the table with ratios.
# Usage: tools/llamacpp/bench.sh [ROUNDS]   (about 10 minutes of building the first time, 6 GB of disk)
set -euo pipefail
rounds=${1:-3} threads=2 prompt=616 generated=64
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/.build/llamacpp version=0.3.36
pdrop=$root/.build/release/pdrop python=$root/tools/reference/.venv/bin/python
mkdir -p "$work"
[ -x "$python" ] || "$root/tools/reference/setup-venv.sh"
src=$work/llama_cpp_python-$version/vendor/llama.cpp
if [ ! -x "$src/build/bin/llama-bench" ]; then
    [ -d "$src" ] || {
        pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$work"
        tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
    }
    [ -x "$work/venv/bin/cmake" ] || { python3 -m venv "$work/venv"; "$work/venv/bin/pip" install -q cmake; }
    "$work/venv/bin/cmake" -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF > "$work/cmake.log"
    "$work/venv/bin/cmake" --build "$src/build" --target llama-bench llama-quantize -j"$(nproc)" > "$work/build.log"
fi
model=$work/model
[ -f "$model/model-bf16.gguf" ] || "$python" "$root/tools/llamacpp/make_random_llama.py" "$model" --gguf-py "$src/gguf-py"
[ -f "$model/model-q8_0.gguf" ] || "$src/build/bin/llama-quantize" "$model/model-bf16.gguf" "$model/model-q8_0.gguf" Q8_0 > "$work/quantize.log" 2>&1
[ -f "$work/model-q8_0/model.safetensors" ] || "$pdrop" quantize --model "$model" --output "$work/model-q8_0"
[ -x "$pdrop" ] || { echo "build pdrop first: make build" >&2; exit 1; }
ids=$(python3 -c "print(','.join(str(3 + (i * 7919) % 31000) for i in range($prompt)))")
results=$work/runs.jsonl
: > "$results"
for round in $(seq "$rounds"); do
    for format in bf16 q8_0; do
        ours=$model; [ $format = q8_0 ] && ours=$work/model-q8_0
        "$pdrop" generate --model "$ours" --prompt-ids "$ids" --max-new-tokens $((generated + 1)) --ignore-eos --json --reduction none \
            --compute bf16 | python3 -c "
import json, sys
o = json.load(sys.stdin)
print(json.dumps({'engine': 'pdrop', 'format': '$format', 'prefill': $prompt / o['prefillSeconds'], 'decode': o['decodeTokensPerSecond']}))" >> "$results"
        # Prefill from an empty context; decode after the prompt (--n-depth fills the context
        # first, untimed), as ours decodes after its prompt.
        speed() { "$src/build/bin/llama-bench" -m "$model/model-$format.gguf" -t $threads -r 1 -o json "$@" 2>/dev/null |
            python3 -c "import json, sys; print(json.load(sys.stdin)[0]['avg_ts'])"; }
        echo "{\"engine\": \"llama.cpp\", \"format\": \"$format\", \"prefill\": $(speed -p $prompt -n 0), \"decode\": $(speed -p 0 -n $generated -d $prompt)}" >> "$results"
        echo "round $round $format: $(tail -2 "$results" | tr '\n' ' ')" >&2
    done
done
python3 - "$results" "$work/results.json" "$rounds" "$threads" "$prompt" "$generated" <<'PY'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
best = {}
for r in runs:
    key = (r["engine"], r["format"])
    b = best.setdefault(key, {"prefill": 0, "decode": 0})
    b["prefill"], b["decode"] = max(b["prefill"], r["prefill"]), max(b["decode"], r["decode"])
table = {"rounds": int(sys.argv[3]), "threads": int(sys.argv[4]), "promptTokens": int(sys.argv[5]), "decodeTokens": int(sys.argv[6]),
         "best": [{"engine": e, "format": f, **v} for (e, f), v in sorted(best.items())], "runs": runs}
json.dump(table, open(sys.argv[2], "w"), indent=1)
print("| format | engine | prefill tok/s | decode tok/s |\n| --- | --- | ---: | ---: |")
for (e, f), v in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0] != "llama.cpp")):
    print(f"| {f} | {e} | {v['prefill']:.1f} | {v['decode']:.2f} |")
median = lambda values: sorted(values)[len(values) // 2] if len(values) % 2 else sum(sorted(values)[len(values) // 2 - 1:][:2]) / 2
for f in ("bf16", "q8_0"):
    ours, theirs = best.get(("pdrop", f)), best.get(("llama.cpp", f))
    pairs = list(zip([r for r in runs if r["engine"] == "pdrop" and r["format"] == f], [r for r in runs if r["engine"] == "llama.cpp" and r["format"] == f]))
    if ours and theirs:
        print(f"{f}: prefill {ours['prefill'] / theirs['prefill']:.2f}× (median of rounds {median([a['prefill'] / b['prefill'] for a, b in pairs]):.2f}×), "
              f"decode {ours['decode'] / theirs['decode']:.2f}× (median of rounds {median([a['decode'] / b['decode'] for a, b in pairs]):.2f}×) llama.cpp")
PY
