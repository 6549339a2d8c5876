"""``--model file.gguf``: a GGUF file converted once into a transformers model directory.

transformers reads GGUF itself (``from_pretrained(dir, gguf_file=...)``, with the
``gguf`` package) but dequantizes every tensor on each load (~15 s for 135M
parameters on a 2-core CPU) and ``save_pretrained`` refuses a model loaded that
way. So the weights are dequantized once, moved into a fresh model built from the
same config (without the GGUF ``quantization_config``) and saved as safetensors
in the cache directory, keyed by the file's SHA-256: later starts load plain
float32 safetensors in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from service.engine.model_cache import build_once

logger = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
# Bump when the conversion changes, so an old cache is never served as the new one.
CONVERSION_VERSION = "v1"


def find_gguf_file(model: str) -> Path | None:
    """The GGUF file ``model`` names: the file itself, or the only ``.gguf`` in a directory that
    holds no transformers model (no config.json). None when ``model`` is not a GGUF model.

    Raises ValueError for a directory with several GGUF files (which one is meant is unclear).
    """
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == GGUF_SUFFIX:
        return path.resolve()
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = sorted(path.glob(f"*{GGUF_SUFFIX}"))
    if len(found) > 1:
        names = ", ".join(file.name for file in found)
        raise ValueError(f"{model} holds several GGUF files ({names}): pass the one to serve")
    return found[0].resolve() if found else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_converted(gguf_file: Path, cache_dir: Path) -> Path:
    """The converted model directory of ``gguf_file`` under ``cache_dir``, converting it on first use."""
    stem = gguf_file.name.removesuffix(GGUF_SUFFIX)
    target = cache_dir / f"gguf-{stem}-{file_sha256(gguf_file)[:16]}-{CONVERSION_VERSION}"
    return build_once(target, lambda staging: convert_gguf(gguf_file, staging))


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_file`` to float32 and save model, tokenizer and generation config in ``out_dir``.

    Raises ValueError when transformers cannot read the file (an architecture it does not
    support in GGUF, or no chat template).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s (dequantizing to float32, once)", gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
        )
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f"{gguf_file}: transformers cannot read this GGUF file: {exc}") from exc
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf_file}: the GGUF file has no chat template")
    config = quantized.config
    del config.quantization_config
    if hasattr(config, "_model_name_or_path"):  # the GGUF's general.name, not a path to load from
        del config._model_name_or_path
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), assign=True, strict=True)
    model.tie_weights()  # assign=True replaced the tied tensors one by one
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _drop_loader_keys(out_dir / "tokenizer_config.json")


def _drop_loader_keys(tokenizer_config: Path) -> None:
    """Keys from how the tokenizer was loaded (a local GGUF), not what it is."""
    values = json.loads(tokenizer_config.read_text())
    for key in ("is_local", "local_files_only"):
        values.pop(key, None)
    tokenizer_config.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n")
