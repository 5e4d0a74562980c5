# The two commands of the README: `make demo` and `make test`. Both install what is missing.
SWIFT ?= swift
# Swift emits AVX2/FMA only for a named target CPU; release builds are for this machine.
RELEASE_FLAGS = -c release -Xswiftc -target-cpu -Xswiftc native
PDROP = .build/release/pdrop
DEMO_MODEL = Tests/Fixtures/tiny-llava
# BOS, then "USER: What is this? ASSISTANT:" in LLaMA token ids.
DEMO_PROMPT = 1,3148,1001,29901,1724,338,445,29973,319,1799,9047,13566,29901

.PHONY: setup build test demo clean fixtures

setup:
	@scripts/ensure-system-libraries.sh

build: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product pdrop

test: setup
	$(SWIFT) test --disable-xctest

demo: build
	$(PDROP) generate --model $(DEMO_MODEL) --prompt-ids $(DEMO_PROMPT) --max-new-tokens 8

# Regenerates Tests/Fixtures with PyTorch + transformers (needs Python; tests do not).
fixtures:
	tools/reference/setup-venv.sh
	cd tools/reference && .venv/bin/python make_fixtures.py && .venv/bin/python make_tokenizer_fixtures.py \
		&& .venv/bin/python make_llava_fixtures.py && .venv/bin/python make_pdrop_fixtures.py

clean:
	rm -rf .build
