"""Load a model and its tokenizer: pick the device and dtype, resolve built-in models."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from service.engine.random_model import is_random_model, load_random_model
from service.engine.tiny_model import TINY_MODEL_NAME, ensure_tiny_model
from service.settings import Settings

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a transformers fast tokenizer
    device: torch.device
    dtype: torch.dtype
    context_length: int

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


def torch_threads(settings: Settings) -> int:
    if settings.torch_threads > 0:
        return settings.torch_threads
    # The inference thread competes with the event loop that sends the tokens: leave it a core.
    return max(1, len(os.sched_getaffinity(0)) - 1)


def resolve_model_path(settings: Settings) -> str:
    """A Hugging Face id or a local directory; built-in names are built on first use."""
    if settings.model == TINY_MODEL_NAME:
        return str(ensure_tiny_model(Path(settings.cache_dir)))
    return settings.model


def load_model(settings: Settings) -> LoadedModel:
    """Load weights and tokenizer as the settings say. Blocking: call it off the event loop."""
    torch.set_num_threads(torch_threads(settings))
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    logger.info("loading %s on %s as %s", settings.model, device, dtype)
    if is_random_model(settings.model):
        model, tokenizer = load_random_model(settings.model, Path(settings.cache_dir), device, dtype)
    else:
        path = resolve_model_path(settings)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=str(device))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{settings.model}: a fast (tokenizers) tokenizer is required")
    if not tokenizer.chat_template:
        raise ValueError(f"{settings.model}: the tokenizer has no chat template")
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        context_length=_context_length(model.config, tokenizer),
    )


def _context_length(config: Any, tokenizer: Any) -> int:
    from_config = getattr(config, "max_position_embeddings", None)
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    from_tokenizer = getattr(tokenizer, "model_max_length", None)
    candidates = [n for n in (from_config, from_tokenizer) if isinstance(n, int) and n < 10**9]
    return min(candidates) if candidates else 4096
