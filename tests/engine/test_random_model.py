"""``random:<config>``: an architecture from a config, random weights, a tokenizer that fits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from service.engine.loader import load_model
from service.engine.random_model import BUNDLED_CONFIGS, config_path, load_random_model
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


def test_bundled_mistral_05b_config_has_half_a_billion_parameters() -> None:
    config = json.loads(BUNDLED_CONFIGS["mistral-0.5b"].read_text())
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    kv_width = config["num_key_value_heads"] * config["head_dim"]
    per_layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * config["intermediate_size"]

    parameters = 2 * vocab * hidden + layers * (per_layer + 2 * hidden) + hidden

    assert 0.45e9 < parameters < 0.55e9
    assert config["model_type"] == "mistral"


def test_random_weights_follow_the_configs_initializer_range(
    small_mistral_config: Callable[..., Path], model_cache_dir: Path
) -> None:
    model, _ = load_random_model(
        f"random:{small_mistral_config(vocab_size=2000)}", model_cache_dir, torch.device("cpu"), torch.float32
    )

    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter).all(), name
        if name.endswith("norm.weight"):
            assert torch.equal(parameter, torch.ones_like(parameter)), name
        else:
            assert parameter.std().item() == pytest.approx(0.02, rel=0.1), name


def test_a_saved_random_model_loads_back_with_every_id_in_its_vocabulary(
    small_mistral_config: Callable[..., Path], model_cache_dir: Path, tmp_path: Path
) -> None:
    built = load_model(
        Settings(model=f"random:{small_mistral_config(vocab_size=2000)}", cache_dir=model_cache_dir)
    )
    built.model.save_pretrained(tmp_path / "saved")
    built.tokenizer.save_pretrained(tmp_path / "saved")

    loaded = load_model(Settings(model=str(tmp_path / "saved"), cache_dir=model_cache_dir))

    assert len(loaded.tokenizer) == 2000
    assert loaded.tokenizer.decode([1999]) == "<random_1999>"
    # Fillers live in the vocabulary: as added tokens, 32k of them took 0.75 s to load.
    assert len(loaded.tokenizer.added_tokens_decoder) < 10
    chat = [{"role": "user", "content": "hello"}]
    assert loaded.tokenizer.apply_chat_template(chat) == built.tokenizer.apply_chat_template(chat)
    for (name, saved), (_, reloaded) in zip(
        built.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert torch.equal(saved, reloaded), name


def test_an_unknown_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no config\.json"):
        config_path(f"random:{tmp_path / 'missing'}")
