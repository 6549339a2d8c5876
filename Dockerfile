# syntax=docker/dockerfile:1
# One image for `docker run`, Modal, Beam and RunPod: `python -m service` on $PORT.
#
#   docker build -t llm-serving .                               # weights fetched at start into $HF_HOME
#   docker build -t llm-serving --build-arg BAKE_WEIGHTS=1 \
#       --secret id=hf_token,env=HF_TOKEN .                     # weights baked in (gated model: token as a secret)
#   docker run --gpus all -p 8000:8000 llm-serving
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

# Ubuntu 24.04's Python is 3.12: Modal's image builder needs 3.11 or later.
# torch comes from PyTorch's CUDA index, pinned like the CPU wheel CI uses (the Makefile's TORCH_SPEC).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG MODEL_ID=mistralai/Mistral-7B-Instruct-v0.3
# 1: download the weights at build time (fastest cold start); 0: at start, into $HF_HOME.
# Built-in models (MODEL_ID=smollm2-135m) are built into $CACHE_DIR, at build time with 1.
ARG BAKE_WEIGHTS=0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/models/huggingface \
    CACHE_DIR=/models/llm-serving \
    NUMBA_CACHE_DIR=/models/numba \
    MODEL_ID=$MODEL_ID \
    HOST=0.0.0.0 \
    PORT=8000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions come from the Ubuntu 24.04 release the base image pins; apt pins would break on every security update.
# libgomp1: numba's OpenMP threads for the CPU decode kernels (service/engine/decode_kernels.py); without it
# numba falls back to its slower workqueue threads.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && useradd --create-home --uid 1001 --shell /usr/sbin/nologin app \
    && mkdir -p "$HF_HOME" "$CACHE_DIR" \
    && chown -R app:app /models

WORKDIR /app

# Dependencies before the code, so that editing the service reuses these layers.
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
# The same lock file CI installs (requirements-dev.lock starts with -r requirements.lock).
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md ./
COPY service/ service/
COPY deploy/ deploy/
COPY docker/ docker/
RUN pip install --no-cache-dir --no-deps .

# The app user created above; numeric, so that runAsNonRoot-style checks can verify it.
USER 1001

# The token is mounted for this one RUN (readable by app only) and never written to a layer.
RUN --mount=type=secret,id=hf_token,uid=1001,required=false \
    if [ "$BAKE_WEIGHTS" = "1" ]; then python docker/fetch_weights.py "$MODEL_ID"; fi

EXPOSE 8000
# A 7B model takes minutes to download and load: /health answers 200 meanwhile, /ready says when it serves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "docker/healthcheck.py"]
CMD ["python", "-m", "service"]
