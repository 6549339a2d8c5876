"""``--model random:<config>``: a real architecture with random weights, for benchmarks.

``<config>`` is a config.json (or a directory holding one) or a bundled name:
``random:mistral-7b`` is Mistral-7B-Instruct-v0.3's architecture (configs/).
Weights are drawn with a fixed seed directly on the target device; the
tokenizer is tiny-random's, padded with filler tokens to the config's
vocabulary so every id the model can produce decodes. The text is gibberish;
speed and memory are the real model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from service.engine.tiny_model import ensure_tiny_model

RANDOM_PREFIX = "random:"
BUNDLED_CONFIGS = {"mistral-7b": Path(__file__).parent / "configs" / "mistral-7b-instruct-v0.3.json"}


def is_random_model(model: str) -> bool:
    return model.startswith(RANDOM_PREFIX)


def config_path(model: str) -> Path:
    name = model.removeprefix(RANDOM_PREFIX)
    path = BUNDLED_CONFIGS.get(name, Path(name))
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        known = ", ".join(sorted(BUNDLED_CONFIGS))
        raise ValueError(f"{model}: no config.json at {path} (bundled: {known})")
    return path


def load_random_model(
    model: str, cache_dir: Path, device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any]:
    """Build ``(model, tokenizer)`` for ``random:<config>`` on ``device``."""
    config = AutoConfig.from_pretrained(config_path(model))
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model(cache_dir))
    filler = [f"<random_{i}>" for i in range(len(tokenizer), config.vocab_size)]
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"{model}: vocabulary of {config.vocab_size} is smaller than the tokenizer's")
    tokenizer.add_tokens(filler)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        # Initialise on the device itself: a 7B model's random init on a CPU takes minutes.
        with torch.device(device):
            random_model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    finally:
        torch.random.set_rng_state(generator_state)
    random_model.generation_config.pad_token_id = tokenizer.eos_token_id
    return random_model, tokenizer
