#!/usr/bin/env bash
# Wheels for running the service and the engine benchmark on a GPU machine that has
# Python 3.12 with CUDA torch and transformers' own needs but no network (and none of
# the web stack): every version from requirements.lock, for CPython 3.12 on x86-64 Linux.
#
#   scripts/offline_wheels.sh [DIR]        # here, with PyPI reachable (default DIR: .whl)
#   # there, before the run:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
#
# torch, numpy and CUDA libraries are not fetched: the machine's own are used.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.whl}"
# The web stack, settings, metrics, the tokenizer and transformers at our versions, and
# what transformers serve (the benchmark's peer) needs beyond them.
packages=(
    fastapi starlette pydantic pydantic_core pydantic-settings python-dotenv typing-inspection
    annotated-types annotated-doc uvicorn httptools uvloop h11 sse-starlette prometheus_client
    transformers tokenizers huggingface_hub hf-xet safetensors accelerate httpx httpcore anyio
    idna certifi sniffio typing_extensions openai jiter tqdm regex PyYAML rich
    markdown-it-py mdurl Pygments python-multipart httpx2 httpcore2 truststore opentelemetry-api
)
pins=()
for name in "${packages[@]}"; do
    pin=$(grep -i -E "^${name//[-_]/[-_]}==" requirements.lock requirements-dev.lock | head -1 | cut -d: -f2 || true)
    if [[ -z "$pin" ]]; then
        echo "offline_wheels: $name is not in the lock files" >&2
        exit 1
    fi
    pins+=("$pin")
done
mkdir -p "$dir"
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "${pins[@]}"
du -sh "$dir"
