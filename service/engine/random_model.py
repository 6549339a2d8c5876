"""``--model random:<config>``: a real architecture with random weights, for benchmarks.

``<config>`` is a config.json (or a directory holding one) or a bundled name:
``random:mistral-7b`` is Mistral-7B-Instruct-v0.3's architecture and
``random:mistral-0.5b`` a 0.5B-parameter Mistral (configs/).
Weights are drawn with a fixed seed directly on the target device; the
tokenizer is tiny-random's, padded with filler tokens to the config's
vocabulary so every id the model can produce decodes. The text is gibberish;
speed and memory are the real model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers.initialization import no_init_weights

from service.engine.tiny_model import ensure_tiny_model, wrap_tokenizer

RANDOM_PREFIX = "random:"
_CONFIGS = Path(__file__).parent / "configs"
BUNDLED_CONFIGS = {
    "mistral-7b": _CONFIGS / "mistral-7b-instruct-v0.3.json",
    # Mistral's shape at Qwen2.5-0.5B's size: weights far larger than tiny-random's, yet a CPU loads them.
    "mistral-0.5b": _CONFIGS / "mistral-0.5b.json",
}


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
    tokenizer = padded_tokenizer(ensure_tiny_model(cache_dir), config.vocab_size, model)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        # Initialise on the device itself: a 7B model's random init on a CPU takes minutes.
        with torch.device(device):
            # NOTE: torch's layers draw their default init in __init__, then transformers draws
            # every weight again (post_init): skip the first, draw once. Building
            # random:mistral-0.5b on a CPU took 4.6 s, now 3.3 s (docs/bench/load-cpu.md).
            with no_init_weights():
                random_model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            random_model.init_weights()
    finally:
        torch.random.set_rng_state(generator_state)
    random_model.generation_config.pad_token_id = tokenizer.eos_token_id
    return random_model, tokenizer


def padded_tokenizer(tiny_dir: Path, vocab_size: int, model: str) -> PreTrainedTokenizerFast:
    """tiny-random's tokenizer with filler tokens ``<random_N>`` up to ``vocab_size`` ids.

    The fillers go into the BPE vocabulary, not in as added tokens: transformers deep-copies
    every added token when it loads a tokenizer, and ~32k of them made loading a saved
    random model's tokenizer take 0.75 s, longer than mapping its 2 GB of weights.
    """
    state = json.loads((tiny_dir / "tokenizer.json").read_text())
    vocab = state["model"]["vocab"]
    known = max([len(vocab), *(token["id"] + 1 for token in state["added_tokens"])])
    if known > vocab_size:
        raise ValueError(f"{model}: vocabulary of {vocab_size} is smaller than the tokenizer's")
    vocab.update({f"<random_{i}>": i for i in range(known, vocab_size)})
    return wrap_tokenizer(Tokenizer.from_str(json.dumps(state)))
