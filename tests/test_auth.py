"""API keys: /v1/* needs a valid bearer key when keys are set; health and metrics stay open."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import serve, stream_chat, wait_until_ready
from tests.fakes import ScriptedEngine
from tests.test_main import free_port

KEYS = "first-secret-key,second-secret-key"


@pytest.fixture(scope="module")
def protected_url() -> Iterator[str]:
    """Keys are the HTTP layer's business: the scripted engine (tests/fakes.py) serves, once."""
    settings = Settings(model="scripted", api_key=KEYS)
    with serve(create_app(settings, ScriptedEngine())) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "first-secret-key"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong key", "no scheme", "empty key"],
)
@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions", "/v1/models"])
def test_requests_without_a_valid_key_get_401(protected_url: str, headers: dict[str, str], path: str) -> None:
    with httpx.Client(base_url=protected_url) as http:
        if path == "/v1/models":
            response = http.get(path, headers=headers)
        else:
            # Malformed on purpose: the key is checked before the body is read.
            response = http.post(path, content=b"{not json", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"


def test_each_configured_key_is_accepted(protected_url: str) -> None:
    for key in KEYS.split(","):
        with httpx.Client(base_url=protected_url, headers={"Authorization": f"Bearer {key}"}) as http:
            result = stream_chat(http, {"messages": "hi", "max_new_tokens": 2})
            assert result.status_code == 200
            assert result.done is not None


def test_openai_sdk_sends_its_key(protected_url: str) -> None:
    with openai.OpenAI(base_url=f"{protected_url}/v1", api_key="second-secret-key") as sdk:
        assert sdk.models.list().data[0].id == "scripted"
    with (
        openai.OpenAI(base_url=f"{protected_url}/v1", api_key="nope", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


def test_health_ready_ping_and_metrics_stay_open(protected_url: str) -> None:
    with httpx.Client(base_url=protected_url) as http:
        assert [http.get(p).status_code for p in ("/health", "/ready", "/ping", "/metrics")] == [200] * 4


def test_a_key_never_appears_in_the_logs(model_cache_dir: Path, engine_name: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "API_KEY": KEYS,
        "MODEL_ID": "tiny-random",
        "CACHE_DIR": str(model_cache_dir),
        "ENGINE": engine_name,
    }
    command = [sys.executable, "-m", "service", "--port", str(port), "--log-level", "debug"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url)
        for key in ("first-secret-key", "wrong-secret-key"):
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
                http.post("/v1/chat", json={"messages": "hi", "max_new_tokens": 2})
                http.post("/v1/chat", content=b"{bad")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert "POST /v1/chat" in output  # the requests were logged...
    assert "secret-key" not in output  # ...and no key with them
