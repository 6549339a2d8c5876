"""docker/fetch_weights.py: what it downloads and where the token comes from.

snapshot_download is replaced by a recorder: the Hugging Face Hub cannot be reached here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "fetch_weights.py"


@pytest.fixture
def fetch_weights(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_weights", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return module


@pytest.fixture
def downloads(fetch_weights: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "/models/huggingface/hub/some-model"

    monkeypatch.setattr(fetch_weights, "snapshot_download", snapshot_download)
    return calls


def test_downloads_the_safetensors_weights_and_tokenizer_only(
    fetch_weights: ModuleType, downloads: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = fetch_weights.fetch("mistralai/Mistral-7B-Instruct-v0.3", secret_path=tmp_path / "none")

    assert path == "/models/huggingface/hub/some-model"
    (call,) = downloads
    assert call["repo_id"] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert "*.safetensors" in call["allow_patterns"]
    assert "consolidated*" in call["ignore_patterns"]
    assert call["token"] is None


def test_the_token_comes_from_the_build_secret(
    fetch_weights: ModuleType, downloads: list[dict[str, Any]], tmp_path: Path
) -> None:
    secret = tmp_path / "hf_token"
    secret.write_text("hf_secret_value\n")

    fetch_weights.fetch("org/gated-model", secret_path=secret)

    assert downloads[0]["token"] == "hf_secret_value"


def test_hf_token_env_wins_over_the_secret_file(
    fetch_weights: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "hf_token"
    secret.write_text("from-file")
    monkeypatch.setenv("HF_TOKEN", "from-env")

    assert fetch_weights.read_token(secret) == "from-env"


def test_a_built_in_model_is_built_into_the_cache_dir_and_a_local_path_needs_nothing(
    fetch_weights: ModuleType,
    downloads: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))

    built = fetch_weights.fetch("tiny-random")

    assert built is not None
    assert (Path(built) / "config.json").is_file()
    assert Path(built).parent == tmp_path / "cache"
    assert fetch_weights.fetch(str(tmp_path)) is None
    assert downloads == []
