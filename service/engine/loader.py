"""Load a model and its tokenizer: pick the device and dtype, resolve built-in models."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from service.engine.builtin_models import BUILTIN_MODELS
from service.engine.cpu_linear import choose_paths, pack_linear_layers, packing_supported
from service.engine.gguf_model import ensure_converted, find_gguf_file
from service.engine.grammar import GrammarCompiler
from service.engine.random_model import is_random_model, load_random_model
from service.settings import EngineSettings

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a transformers fast tokenizer
    device: torch.device
    dtype: torch.dtype
    context_length: int
    # Every token that ends a completion: generation_config's (an int or a list) and the tokenizer's.
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    # Structured output and tool calls: schemas compiled for this tokenizer (service.engine.grammar).
    grammars: GrammarCompiler

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


def torch_threads(settings: EngineSettings) -> int:
    if settings.torch_threads > 0:
        return settings.torch_threads
    # The inference thread competes with the event loop that sends the tokens: leave it a core.
    return max(1, len(os.sched_getaffinity(0)) - 1)


def resolve_model_path(settings: EngineSettings) -> str:
    """A Hugging Face id or a local directory: built-in names are built and GGUF files converted
    on first use, into the cache directory."""
    cache_dir = Path(settings.cache_dir)
    if builtin := BUILTIN_MODELS.get(settings.model):
        return str(builtin.ensure(cache_dir))
    if gguf_file := find_gguf_file(settings.model):
        return str(ensure_converted(gguf_file, cache_dir))
    return settings.model


def load_model(settings: EngineSettings) -> LoadedModel:
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
    if settings.pack_weights and packing_supported(device, dtype):
        pack_linear_layers(model, few_rows_paths=settings.few_rows_kernel)
        choose_paths(model)  # ~1 s for a 135M model: which kernel is fastest at a few rows here
    eos_token_ids = _eos_token_ids(model, tokenizer)
    if not eos_token_ids:
        raise ValueError(
            f"{settings.model}: neither the generation config nor the tokenizer names an EOS token"
        )
    pad_token_id = tokenizer.pad_token_id
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        context_length=_context_length(model.config, tokenizer, settings.max_model_len),
        eos_token_ids=eos_token_ids,
        pad_token_id=pad_token_id if pad_token_id is not None else eos_token_ids[0],
        grammars=GrammarCompiler(tokenizer, eos_token_ids, vocab_size=model.config.vocab_size),
    )


def _eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """Instruct models often end a turn with another token than the tokenizer's EOS (Llama-3's
    <|eot_id|>, Qwen2.5's <|im_end|>): generation_config lists them all."""
    generation_config = getattr(model, "generation_config", None)
    declared = getattr(generation_config, "eos_token_id", None)
    ids = [declared] if isinstance(declared, int) else list(declared or [])
    ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, int)))


def _context_length(config: Any, tokenizer: Any, max_model_len: int) -> int:
    from_config = getattr(config, "max_position_embeddings", None)
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    from_tokenizer = getattr(tokenizer, "model_max_length", None)
    candidates = [n for n in (from_config, from_tokenizer) if isinstance(n, int) and n < 10**9]
    model_limit = min(candidates) if candidates else 4096
    return min(model_limit, max_model_len) if max_model_len else model_limit
