#!/usr/bin/env bash
# `make fuzz`: builds pdrop-fuzz with libFuzzer and AddressSanitizer (LeakSanitizer included), runs
# every target for FUZZ_RUNS executions (bounded by FUZZ_MAX_TIME seconds each) on a copy of its
# committed seed corpus (Tests/Fuzz/corpus/<target>/, never modified), and writes docs/RELIABILITY.md
# from the runs. A target that crashes, traps, leaks, times out or trips a sanitizer fails the run;
# its reproducer is left in .build/fuzz-artifacts/ (replay it with a normal build:
# `.build/debug/pdrop-fuzz <target> <file>`).
#
#   FUZZ_TARGETS="png jpeg"   only these targets (docs/RELIABILITY.md is then not rewritten)
#   FUZZ_RUNS=1000000         executions per target
#   FUZZ_MAX_TIME=900         seconds per target at most
#   FUZZ_REPORT=path          where the report goes (default docs/RELIABILITY.md)
set -uo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
ALL_TARGETS="safetensors config tokenizer preprocessor png jpeg conversation trainer-state"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
RUNS=${FUZZ_RUNS:-1000000}
MAX_TIME=${FUZZ_MAX_TIME:-900}
REPORT=${FUZZ_REPORT:-docs/RELIABILITY.md}
BUILD=.build/fuzz
WORK=.build/fuzz-work
BINARY=$BUILD/release/pdrop-fuzz

# What each target covers (one line each, for the report).
declare -A COVERS=(
  [safetensors]="\`SafeTensorsFile.parseHeader\` (header length, UTF-8, JSON, dtypes, shapes, offsets, contiguity); valid files opened by path (mmap) and every tensor read"
  [config]="config.json through \`ModelConfiguration.parse\`: LLaVA, LLaVA-NeXT and LLaMA families, text and vision sub-configs"
  [tokenizer]="tokenizer.json (+ tokenizer_config.json after a NUL byte) through \`Tokenizer(data:configData:)\`, then encode/decode of a fixed text: BPE, normalizers, pre-tokenizers, regex patterns (time-limited), post-processors, decoders"
  [preprocessor]="preprocessor_config.json / processor_config.json through \`CLIPImageProcessorConfig.parse\` and \`AnyresProcessorConfig.parse\`"
  [png]="\`ImageDecoder.decode\` of bytes: our libpng wrapper (errors, transparency, 16-bit, palette, EXIF orientation); libpng itself is not instrumented"
  [jpeg]="\`ImageDecoder.decode\` of bytes: our libjpeg wrapper (errors, CMYK, EXIF orientation); libjpeg itself is not instrumented"
  [conversation]="LLaVA conversation JSON through \`TrainingDataset.load\` (records, ids, image paths confined to the images directory, tokenization with labels; a tiny BPE tokenizer, images not opened)"
  [trainer-state]="trainer_state.safetensors through \`TrainingCheckpoint.restore\` beside a fixed model.safetensors of step 1: counters, step agreement, moment names, shapes and dtypes"
)
# Per-target libFuzzer options: the largest input worth trying.
declare -A OPTIONS=(
  [tokenizer]="-max_len=8192"
  [conversation]="-max_len=1024"
  [jpeg]="-max_len=2048"
)

echo "== building pdrop-fuzz with -sanitize=fuzzer,address"
"$SWIFT" build --build-path "$BUILD" -c release --product pdrop-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -g || exit 1

mkdir -p "$WORK" .build/fuzz-artifacts
failed=0
rows=""
for target in $TARGETS; do
  [[ -n "${COVERS[$target]:-}" ]] || { echo "unknown target $target (known: $ALL_TARGETS)"; exit 2; }
  corpus=$WORK/corpus-$target
  rm -rf "$corpus" && mkdir -p "$corpus" && cp Tests/Fuzz/corpus/"$target"/* "$corpus"/
  log=$WORK/$target.log
  echo "== $target: up to $RUNS executions or ${MAX_TIME}s (log: $log)"
  start=$(date +%s)
  # LeakSanitizer is on (libFuzzer's -detect_leaks=1 default); -timeout flags any input taking 10 s.
  PDROP_FUZZ_TARGET=$target ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    "$BINARY" "$corpus" -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix=.build/fuzz-artifacts/"$target"- ${OPTIONS[$target]:-} >"$log" 2>&1
  status=$?
  seconds=$(( $(date +%s) - start ))
  executions=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  executions=${executions:-0}
  rate=$(( seconds > 0 ? executions / seconds : executions ))
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  seeds=$(ls Tests/Fuzz/corpus/"$target" | wc -l)
  peak=$(sed -n 's/^stat::peak_rss_mb: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  slowest=$(sed -n 's/^stat::slowest_unit_time_sec: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  # libFuzzer turns leak checking off by itself when mallocs and frees never balance (global caches).
  if grep -q "disabled leak detection" "$log"; then leaks="off (libFuzzer disabled it)"; else leaks="on"; fi
  findings=0
  if [[ $status -ne 0 ]] || grep -qE '^==[0-9]+==ERROR|^SUMMARY: |deadly signal|ERROR: libFuzzer' "$log"; then
    findings=1
    failed=1
    echo "!! $target: a finding (exit $status); see $log and .build/fuzz-artifacts/$target-*"
    grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
  fi
  echo "   $executions executions in ${seconds}s ($rate/s), coverage $coverage edges, findings $findings"
  rows+="| \`$target\` | $seeds | $executions | $seconds | $rate | ${coverage:-?} | ${slowest:-?} | ${peak:-?} | $leaks | $findings | ${COVERS[$target]} |"$'\n'
done

if [[ "$TARGETS" != "$ALL_TARGETS" ]]; then
  echo "(a subset of targets: $REPORT not rewritten)"
  exit $failed
fi

swift_version=$("$SWIFT" --version 2>&1 | head -1)
{
  echo "# Reliability: fuzzing the parsers of untrusted files"
  echo
  echo "Generated by \`make fuzz\` (scripts/fuzz.sh) on $(date -u +%Y-%m-%d); do not edit by hand."
  echo
  echo "Every parser that reads a file a stranger can hand us runs under libFuzzer with AddressSanitizer"
  echo "and LeakSanitizer (\`swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING\`,"
  echo "product \`pdrop-fuzz\`, one target per parser chosen by \`PDROP_FUZZ_TARGET\`), starting from the seed"
  echo "corpus committed under \`Tests/Fuzz/corpus/<target>/\` (valid fixtures cut down plus malformed cases,"
  echo "written by \`scripts/make-fuzz-corpus.py\`). A thrown error is the expected outcome for a malformed"
  echo "input; a crash, trap, leak, sanitizer report or an input taking over 10 s is a finding."
  echo "Each run: at most $RUNS executions and ${MAX_TIME} s per target; $(nproc) cores ($swift_version)."
  echo
  echo "| target | seeds | executions | seconds | executions/s | coverage (edges) | slowest input (s) | peak RSS (MB) | leak checks | findings | covers |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"
  printf '%s' "$rows"
  echo
  echo "Leak checks: LeakSanitizer runs after any input whose mallocs and frees do not balance (libFuzzer's"
  echo "\`-detect_leaks=1\`, the default); \"on\" means it stayed on for the whole run (Swift runtime metadata"
  echo "and caches are reachable, so they are not reported). Image targets refuse headers above 65,536 pixels"
  echo "(\`FuzzHarness.imageOptions\`): the check is the same at any limit, and decoding the images a few bytes"
  echo "can claim would take most of the run."
  echo
  echo "A finding is fixed in its parser with a regression test in that parser's suite, and its input joins"
  echo "the corpus. The scratch files of path-only parsers (data.json, the trainer state) live in /dev/shm."
  echo
  echo "The committed seeds are also replayed by \`swift test\` (Tests/FuzzTests) without sanitizers, and by"
  echo "\`.build/debug/pdrop-fuzz <target> <files or directories>\` from a normal build."
} >"$REPORT"
echo "== wrote $REPORT"
exit $failed
