"""``bench-10m``: a ~10M-parameter Mistral-architecture model with random weights, built offline.

Ten times tiny-random, so that matrix work, not only per-token Python overhead,
shows in the numbers, while a CPU still generates a few hundred tokens a second.
It reuses tiny-random's tokenizer and chat template (service/engine/tiny_model.py),
so every server applies the same template to the same prompts. Deterministic: a
fixed seed, built once into a cache directory, written to a temporary directory
and renamed into place so that concurrent processes never see half a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

BENCH_MODEL_NAME = "bench-10m"
# Bump when the recipe changes, so an old cache is never measured as the new model.
BENCH_MODEL_VERSION = "v1"
# Eight layers with 8 query heads and 4 KV heads, as the issue asks; hidden 320 and
# intermediate 960 bring the total to ~10M parameters with the tiny tokenizer's vocabulary.
HIDDEN_SIZE = 320
INTERMEDIATE_SIZE = 960
NUM_LAYERS = 8
NUM_HEADS = 8
NUM_KV_HEADS = 4


def resolve_bench_model(model: str, cache_dir: Path) -> Path:
    """A local model directory for ``model``: 'bench-10m' and 'tiny-random' are built on first use.

    Raises FileNotFoundError when ``model`` is neither a built-in name nor a directory with a config.json.
    """
    if model == BENCH_MODEL_NAME:
        return ensure_bench_model(cache_dir)
    if model == "tiny-random":
        from service.engine.tiny_model import ensure_tiny_model

        return ensure_tiny_model(cache_dir)
    path = Path(model).expanduser().resolve()
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{model}: not 'bench-10m', 'tiny-random' or a model directory")
    return path


def ensure_bench_model(cache_dir: Path) -> Path:
    """Return bench-10m's directory under ``cache_dir``, building it first if it is not there."""
    target = cache_dir / f"{BENCH_MODEL_NAME}-{BENCH_MODEL_VERSION}"
    if (target / "config.json").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
    try:
        build_bench_model(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first; its build is identical.
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_bench_model(out_dir: Path) -> None:
    """Train tiny-random's tokenizer, initialise the bigger model with a fixed seed, save both."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from service.engine.tiny_model import CONTEXT_LENGTH, train_tokenizer

    tokenizer = train_tokenizer()
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        head_dim=HIDDEN_SIZE // NUM_HEADS,
        max_position_embeddings=CONTEXT_LENGTH,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = MistralForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
