"""The built-in tiny-random model: offline, deterministic, Mistral-shaped."""

from __future__ import annotations

import hashlib
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from service.engine.tiny_model import CHAT_TEMPLATE, build_tiny_model, ensure_tiny_model, tiny_model_dir


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic(tmp_path: Path, model_cache_dir: Path) -> None:
    cached = ensure_tiny_model(model_cache_dir)
    build_tiny_model(tmp_path)

    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert digest(tmp_path / name) == digest(cached / name), name


def test_is_a_mistral_of_about_a_million_parameters(model_cache_dir: Path) -> None:
    path = ensure_tiny_model(model_cache_dir)

    config = AutoConfig.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

    assert config.model_type == "mistral"
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6
    assert config.vocab_size == len(tokenizer)
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_is_built_once_into_the_cache(tmp_path: Path) -> None:
    first = ensure_tiny_model(tmp_path)
    marker = first / "config.json"
    mtime = marker.stat().st_mtime_ns

    second = ensure_tiny_model(tmp_path)

    assert first == second == tiny_model_dir(tmp_path)
    assert marker.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name], "no staging directory left behind"
