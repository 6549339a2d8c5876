"""``random:<config>``: an architecture from a config, random weights, a tokenizer that fits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from service.engine.loader import load_model
from service.engine.random_model import BUNDLED_CONFIGS, config_path
from service.settings import Settings


def test_bundled_mistral_7b_config_is_mistral_7b_instruct_v03() -> None:
    config = json.loads(BUNDLED_CONFIGS["mistral-7b"].read_text())

    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (4096, 32, 32768)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (32, 8)
    assert config_path("random:mistral-7b") == BUNDLED_CONFIGS["mistral-7b"]


def test_a_small_config_loads_with_random_weights_and_decodes_every_id(
    small_mistral_config: Callable[..., Path], model_cache_dir: Path
) -> None:
    config_dir = small_mistral_config(vocab_size=2000)

    loaded = load_model(Settings(model=f"random:{config_dir}", cache_dir=model_cache_dir, device="cpu"))

    assert loaded.model.config.vocab_size == len(loaded.tokenizer) == 2000
    assert loaded.model.config.num_hidden_layers == 2
    assert loaded.tokenizer.decode([1999])  # a filler id decodes to text
    output = loaded.model.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=3, do_sample=False)
    assert output.shape == (1, 6)


def test_an_unknown_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no config\.json"):
        config_path(f"random:{tmp_path / 'missing'}")
