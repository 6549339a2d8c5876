"""Download a model's weights into $HF_HOME: at build time (baked into the image) or before a start.

    python docker/fetch_weights.py mistralai/Mistral-7B-Instruct-v0.3

The token of a gated model comes from $HF_TOKEN or, during `docker build`, from the
BuildKit secret mounted at /run/secrets/hf_token; it is never written anywhere.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from huggingface_hub import snapshot_download

from service.engine.builtin_models import BUILTIN_MODELS
from service.settings import Settings

logger = logging.getLogger("fetch_weights")

SECRET_PATH = Path("/run/secrets/hf_token")
# What transformers loads: config, tokenizer, safetensors weights.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
# Mistral's repositories ship the same weights twice (consolidated.safetensors for
# mistral-inference); transformers never reads that copy, and it is 14.5 GB.
IGNORE_PATTERNS = ["consolidated*", "original/*"]


def read_token(secret_path: Path = SECRET_PATH) -> str | None:
    """$HF_TOKEN if set, else the build secret if mounted, else None (public models)."""
    if token := os.environ.get("HF_TOKEN"):
        return token
    if secret_path.is_file():
        return secret_path.read_text().strip() or None
    return None


def fetch(model_id: str, secret_path: Path = SECRET_PATH) -> str | None:
    """Download ``model_id`` into the Hugging Face cache; return its local path.

    A built-in model is built into the service's cache directory ($CACHE_DIR) instead, so
    that a baked image starts without building it; a local path needs nothing.
    """
    if builtin := BUILTIN_MODELS.get(model_id):
        path = builtin.ensure(Settings(model=model_id).cache_dir)
        logger.info("%s is built in %s", model_id, path)
        return str(path)
    if Path(model_id).exists():
        logger.info("%s is a local path: nothing to download", model_id)
        return None
    path = snapshot_download(
        repo_id=model_id,
        allow_patterns=ALLOW_PATTERNS,
        ignore_patterns=IGNORE_PATTERNS,
        token=read_token(secret_path),
    )
    logger.info("%s is in %s", model_id, path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_id", nargs="?", default=os.environ.get("MODEL_ID"))
    args = parser.parse_args(argv)
    if not args.model_id:
        parser.error("give a model id or set MODEL_ID")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fetch(args.model_id)


if __name__ == "__main__":
    main()
