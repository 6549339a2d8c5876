"""Benchmark models: built-in recipes and random:<config> saved as directories."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench.model import resolve_bench_model


def test_a_random_config_is_saved_once_as_a_model_directory(tmp_path: Path) -> None:
    import json

    from service.engine.random_model import BUNDLED_CONFIGS

    config = json.loads(BUNDLED_CONFIGS["mistral-7b"].read_text())
    config.update(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        head_dim=16,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
    )
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "config.json").write_text(json.dumps(config))

    directory = resolve_bench_model(f"random:{tmp_path / 'small'}", tmp_path / "cache", "cpu", "float32")
    again = resolve_bench_model(f"random:{tmp_path / 'small'}", tmp_path / "cache", "cpu", "float32")

    assert directory == again
    assert (directory / "config.json").exists()
    assert (directory / "tokenizer.json").exists()
    assert json.loads((directory / "config.json").read_text())["vocab_size"] == 1000
