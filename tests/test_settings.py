"""One settings class: env vars and flags fill the same fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import DEFAULT_MODEL_ID, EngineSettings, Settings


def test_defaults_serve_mistral_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL_ID", "MODEL", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert settings.model == DEFAULT_MODEL_ID == "mistralai/Mistral-7B-Instruct-v0.3"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_new_tokens == 512


def test_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_ID", "some/model")
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("TORCH_THREADS", "2")

    settings = Settings()

    assert (settings.model, settings.port, settings.torch_threads) == ("some/model", 9001, 2)


def test_flags_override_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_ID", "from/env")

    settings = Settings(_cli_parse_args=["--model", "tiny-random", "--max-new-tokens", "64"])  # type: ignore[call-arg]

    assert (settings.model, settings.max_new_tokens) == ("tiny-random", 64)


def test_served_model_name_defaults_to_the_model() -> None:
    assert Settings(model="a/b").model_name == "a/b"
    assert Settings(model="a/b", served_model_name="mistral").model_name == "mistral"
    assert Settings(model="smollm2-135m").model_name == "smollm2-135m"


def test_a_local_path_is_served_under_its_base_name(tmp_path: Path) -> None:
    directory = tmp_path / "models" / "my-model"
    directory.mkdir(parents=True)
    gguf = tmp_path / "models" / "llama-3.2-1b.Q4_0.gguf"
    gguf.write_bytes(b"GGUF")

    assert Settings(model=str(directory)).model_name == "my-model"
    assert Settings(model=f"{directory}/").model_name == "my-model"
    assert Settings(model=str(gguf)).model_name == "llama-3.2-1b.Q4_0"
    assert Settings(model=str(directory), served_model_name="mine").model_name == "mine"


def test_the_help_names_every_built_in_model() -> None:
    from service.engine.builtin_models import BUILTIN_MODELS

    description = Settings.model_fields["model"].description or ""
    assert all(f"'{name}'" in description for name in BUILTIN_MODELS)


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        Settings(port=70000)


def test_generation_slots_follow_the_engine_unless_set() -> None:
    assert Settings(engine="sequential").generation_slots == 1
    assert Settings(engine="batched", max_batch_size=12).generation_slots == 12
    assert Settings(engine="batched", max_concurrency=3).generation_slots == 3


def test_a_static_cache_needs_the_sequential_engine() -> None:
    assert Settings(engine="sequential", static_cache=True).static_cache

    with pytest.raises(ValidationError, match="--static-cache applies to the sequential engine"):
        Settings(engine="batched", static_cache=True)


def test_the_engine_keeps_only_its_part_of_the_settings() -> None:
    from service.engine import create_engine

    settings = Settings(model="tiny-random", api_key="sk-secret", port=9000, max_concurrency=3)

    engine = create_engine(settings)

    kept = engine._settings  # type: ignore[attr-defined]
    assert type(kept) is EngineSettings
    assert not hasattr(kept, "api_key")
    assert not hasattr(kept, "port")
    assert (kept.model, engine.max_concurrency) == ("tiny-random", 3)
