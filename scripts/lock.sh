#!/usr/bin/env bash
# Regenerate requirements.lock and requirements-dev.lock from pyproject.toml's ranges,
# in a throwaway venv. torch is pinned on its own (TORCH_SPEC): CPU wheel here, CUDA in the image.
# requirements.lock is what the Docker image installs: the service plus the provider SDKs
# (the `deploy` extra) that the shims import inside the one image every provider runs.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q "$TORCH_SPEC"
# The project itself is excluded: `pip install .` would otherwise pin it as a file:// URL of this checkout.
freeze() { "$tmp/venv/bin/pip" freeze --exclude-editable --exclude llm-serving |
  grep -viE '^(torch|triton|nvidia-|pip|setuptools|wheel)([=-]|$)' ; }
"$tmp/venv/bin/pip" install -q ".[deploy]"
{ echo "# Runtime pins, installed after $TORCH_SPEC. Regenerate: make lock"; freeze; } > requirements.lock
"$tmp/venv/bin/pip" install -q ".[dev]"
{ echo "# Runtime and dev pins. Regenerate: make lock"; echo "-r requirements.lock";
  freeze | grep -vxF -f <(grep -v '^#' requirements.lock); } > requirements-dev.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) pins), requirements-dev.lock"
