# One entry point per job; see README.md.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= mini
PARTS ?= bench,determinism,loader,paper

.PHONY: setup mini smoke paper rehearse test test-fast bench gpu-check

setup:  ## create .venv and install the package editable with the paper + test extras (+ offline Fashion-MNIST where apt exists)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[paper,test]'
	-@if command -v apt-get >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not install dataset-fashion-mnist; the mini profile will look for Fashion-MNIST elsewhere"; fi

mini:   ## the main job: every table and figure from the offline mini protocol
	$(BIN)/python -m adaptertune.paper.suite --profile mini

smoke:  ## plumbing only, seconds per notebook
	$(BIN)/python -m adaptertune.paper.suite --profile smoke

paper:  ## the exact paper protocol (GPU + downloads)
	$(BIN)/python -m adaptertune.paper.suite --profile paper

rehearse:  ## the paper profile end to end on CPU, offline (random weights in a local hub cache, a 224-px fixture; ~3 min)
	$(BIN)/python benchmarks/rehearse.py

test:   ## the whole suite, as CI runs it: the linter (ruff), then pytest
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q

test-fast:  ## the edit-test loop: the linter, then everything but the tests marked slow (under a minute)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

bench:  ## speed and memory: the regimes side by side (bench.*), then many tasks on one backbone (multitask.*)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/multitask.py
	$(BIN)/python -m adaptertune.paper.readme --only benchmarks/

gpu-check:  ## the first thing to run on a GPU machine: bench (fp32/bf16/compile), determinism, loader, one paper run -> benchmarks/results/gpu/<device>/ (PARTS=mini: make mini on the GPU)
	$(BIN)/python benchmarks/gpu_check.py --parts $(PARTS)
