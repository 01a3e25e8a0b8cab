# driftrec: `make demo` sets up .venv and runs the main job; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

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

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check retrieval agent prompts eval tests
	$(BIN)/mypy retrieval agent prompts eval

bench: setup
	$(BIN)/python -m eval.bench_retrieval

clean:
	rm -rf $(VENV) build *.egg-info
