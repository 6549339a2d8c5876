"""``python -m service`` as a user runs it: a real process, flags and env vars."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import stream_chat, wait_until_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServerProcess:
    url: str
    # Seconds from just before the spawn until the test saw /ready answer 200.
    ready_seen_after_s: float


@pytest.fixture(scope="module")
def server_process(model_cache_dir: Path, engine_name: str) -> Iterator[ServerProcess]:
    port = free_port()
    # The model comes from the env var and the port from the flag: both paths work.
    env = {**os.environ, "MODEL_ID": "tiny-random", "CACHE_DIR": str(model_cache_dir), "ENGINE": engine_name}
    spawned_at = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout_s=120)
        yield ServerProcess(url, time.monotonic() - spawned_at)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output


def test_python_m_service_serves_and_streams(server_process: ServerProcess) -> None:
    with httpx.Client(base_url=server_process.url, timeout=60) as http:
        result = stream_chat(http, {"messages": "hello", "max_new_tokens": 5, "ignore_eos": True})
        models = http.get("/v1/models").json()

    assert result.done is not None
    assert result.done["usage"]["completion_tokens"] == 5
    assert models["data"][0]["id"] == "tiny-random"


def test_ready_times_the_start_from_process_start(server_process: ServerProcess) -> None:
    startup = httpx.get(f"{server_process.url}/ready", timeout=30).json()["startup"]

    assert all(startup[f"{phase}_s"] > 0 for phase in ("import", "load", "warmup"))
    assert startup["import_s"] + startup["load_s"] + startup["warmup_s"] == pytest.approx(startup["ready_s"])
    # The process started after the spawn and was ready before the test saw it; the
    # start time is known to a clock tick (10 ms); polling sees ready a little late.
    assert server_process.ready_seen_after_s - 2.0 < startup["ready_s"]
    assert startup["ready_s"] <= server_process.ready_seen_after_s + 0.02


def test_help_lists_every_setting_as_a_flag() -> None:
    from service.settings import Settings

    help_text = subprocess.run(
        [sys.executable, "-m", "service", "--help"], capture_output=True, text=True, check=True
    ).stdout

    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text, name


def test_http_layer_does_not_import_torch() -> None:
    code = (
        "import sys, service.app, service.routes.chat, service.routes.openai, service.routes.health;"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_openapi_schema_documents_every_endpoint(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for path in ("/v1/chat", "/v1/chat/completions", "/v1/models", "/health", "/ready", "/ping", "/metrics"):
        assert path in paths, path
    assert "text/event-stream" in paths["/v1/chat"]["post"]["responses"]["200"]["content"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "0"], "--port: Input should be greater than or equal to 1"),
        (["--static-cache"], "--static-cache applies to the sequential engine"),
    ],
)
def test_invalid_settings_are_named_without_a_traceback(args: list[str], says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "--model", "tiny-random", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert "python -m service: invalid settings" in result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
