"""Benchmark models: built-in recipes and random:<config> saved as directories."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from loadtest.bench.lib.model import resolve_bench_model


def test_a_random_config_is_saved_once_as_a_model_directory(
    tmp_path: Path, small_mistral_config: Callable[..., Path]
) -> None:
    config_dir = small_mistral_config(vocab_size=1000)

    directory = resolve_bench_model(f"random:{config_dir}", tmp_path / "cache", "cpu", "float32")
    again = resolve_bench_model(f"random:{config_dir}", tmp_path / "cache", "cpu", "float32")

    assert directory == again
    assert (directory / "config.json").exists()
    assert (directory / "tokenizer.json").exists()
    assert json.loads((directory / "config.json").read_text())["vocab_size"] == 1000
