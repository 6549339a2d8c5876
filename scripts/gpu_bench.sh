#!/usr/bin/env bash
# The engine benchmark on a GPU in one prepared run, for a machine with CUDA torch and no
# network: the single streams of every engine against raw generate and transformers serve,
# then the load levels of the batched engine against transformers serve --continuous-batching.
# Each part is its own bench_engine run under its own timeout, so a part that runs out of
# time still leaves the others' results.
#
#   scripts/offline_wheels.sh                 # here: the web stack as wheels, into .whl/
#   OUT=/results scripts/gpu_bench.sh         # there: installs .whl/ if present, runs both parts
#   OUT=/results scripts/gpu_bench.sh single  # or one part per call, where a call is time-limited
#
# Results, written as each part ends: OUT/<stem>.md and .json per part, OUT/<part>-logs.tar.gz
# (its log and the servers' logs), OUT/machine.txt.
# A dry run on a CPU: WHEELS=none MODEL=bench-10m DEVICE=cpu TOKENS=16 LOAD_LEVELS=2 scripts/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-/tmp/gpu-bench}"
MODEL="${MODEL:-random:mistral-7b}"
DEVICE="${DEVICE:-cuda}"
TOKENS="${TOKENS:-512}"
LOAD_LEVELS="${LOAD_LEVELS:-8,32}"
PART_TIMEOUT_S="${PART_TIMEOUT_S:-280}"  # both parts within a 10-minute call
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"  # offline_wheels.sh's folder; WHEELS=none: use what is installed
work="$(mktemp -d)"
mkdir -p "$OUT"

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
    export PATH="/tmp/site/bin:$PATH"  # the transformers command (transformers serve)
fi
export PYTHONUNBUFFERED=1

{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1
    "$PYTHON" -c 'import torch, transformers, fastapi, uvicorn; print("torch", torch.__version__,
"cuda", torch.cuda.is_available(), "transformers", transformers.__version__,
"fastapi", fastapi.__version__, "uvicorn", uvicorn.__version__)'
} 2>&1 | tee "$OUT/machine.txt"

part() {
    local name="$1"
    shift
    echo "== $name: $*"
    timeout "$PART_TIMEOUT_S" "$PYTHON" -m loadtest.bench engine --model "$MODEL" --device "$DEVICE" \
        --tokens "$TOKENS" --repeats 1 --out "$work" --stem "engine-bench-${DEVICE%%:*}-$name" "$@" \
        >"$work/$name.log" 2>&1
    echo "== $name: exit $?"
    grep -v '^20[0-9][0-9]-' "$work/$name.log" | tail -30
    # Out at once: a later part that is killed cannot take this one's results with it.
    cp "$work"/*"-$name".md "$work"/*"-$name".json "$OUT"/ 2>/dev/null
    tar -czf "$OUT/$name-logs.tar.gz" -C "$work" "$name.log" $(cd "$work" && ls -d ./*"-$name-logs" 2>/dev/null)
}

parts="${*:-single load}"
for name in $parts; do
    case "$name" in
    # Single streams: each engine and plain transformers serve, interleaved with raw generate.
    single) part single --concurrency 1 --requests-per-level 1 --single-repeats 2 \
        --engines sequential,sequential-static,batched --peers transformers-serve ;;
    # Load: the batched engine against transformers serve's continuous batching.
    load) part load --concurrency "$LOAD_LEVELS" --single-repeats 1 --engines batched \
        --peers transformers-serve-cb ;;
    *) echo "gpu_bench: unknown part $name (single, load)" >&2; exit 2 ;;
    esac
done