"""Models built on this machine (built-ins, converted GGUF files) live in one cache directory.

Each is built once into a temporary directory beside its target and renamed into
place, so concurrent processes never see half a model and an interrupted build
leaves nothing that looks finished.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, running ``build(staging_dir)`` first if it holds no model yet."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first; its build is identical.
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built %s", target)
    return target
