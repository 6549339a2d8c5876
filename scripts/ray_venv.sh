#!/usr/bin/env bash
# Ray Serve in a venv of its own (never the project's lock): ray[serve] pulls its own
# protobuf, grpcio and aiohttp. The venv sees the project's venv and this checkout through a
# .pth file, so torch and the service are not installed twice.
#
#   scripts/ray_venv.sh [VENV]      # default .peers/ray; ~30 s
#   .peers/ray/bin/serve run deploy.ray_serve:app
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.peers/ray}"
RAY_SPEC="${RAY_SPEC:-ray[serve]==2.60.0}"
PROJECT_SITE=$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')

[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
# Written on every run: a venv kept in a cache serves whichever checkout calls this script.
SITE=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
printf '%s\n%s\n' "$PROJECT_SITE" "$PWD" > "$SITE/_llm_serving_project.pth"
if "$VENV/bin/python" -c 'import ray.serve, service' 2>/dev/null; then
    echo "$VENV: ray already installed, pointed at $PWD"
    exit 0
fi
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q "$RAY_SPEC"
"$VENV/bin/python" -c 'import ray, service; print("ray", ray.__version__)'
