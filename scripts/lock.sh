#!/usr/bin/env bash
# Regenerate requirements.lock and requirements-dev.lock from pyproject.toml's ranges,
# in a throwaway venv. torch is pinned on its own (TORCH_SPEC): CPU wheel here, CUDA in the image.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q "$TORCH_SPEC"
freeze() { "$tmp/venv/bin/pip" freeze --exclude-editable | grep -viE '^(torch|triton|nvidia-|pip|setuptools|wheel|llm-serving)([=-]| @|$)' ; }
"$tmp/venv/bin/pip" install -q .
{ echo "# Runtime pins, installed after $TORCH_SPEC. Regenerate: make lock"; freeze; } > requirements.lock
"$tmp/venv/bin/pip" install -q ".[dev]"
{ echo "# Runtime and dev pins. Regenerate: make lock"; echo "-r requirements.lock";
  freeze | grep -vxF -f <(grep -v '^#' requirements.lock); } > requirements-dev.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) pins), requirements-dev.lock"
