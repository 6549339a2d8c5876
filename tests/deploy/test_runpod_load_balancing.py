"""RunPod load-balancing endpoints run the image's own server: PORT from the env, /ping 204 then 200."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.engine.sequential import SequentialEngine
from service.settings import Settings
from tests.conftest import serve, stream_chat, wait_until_ready
from tests.routes.test_health import GatedLoader
from tests.test_main import free_port


def test_ping_is_204_while_loading_then_200_and_the_stream_is_sse(
    model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings as the container reads them: env vars only, no flags.
    monkeypatch.setenv("MODEL_ID", "tiny-random")
    monkeypatch.setenv("CACHE_DIR", str(model_cache_dir))
    settings = Settings()
    loader = GatedLoader()
    app = create_app(settings, SequentialEngine(settings, loader=loader))

    with serve(app, wait_ready=False) as url, httpx.Client(base_url=url, timeout=30) as http:
        loading = http.get("/ping")
        loader.gate.set()
        wait_until_ready(url)
        ready = http.get("/ping")
        stream = stream_chat(http, {"messages": "hi", "max_new_tokens": 4})

    assert loading.status_code == 204
    assert ready.status_code == 200
    assert stream.status_code == 200
    assert stream.done is not None


def test_the_server_listens_on_port_from_the_env(model_cache_dir: Path) -> None:
    port = free_port()
    # What RunPod sets for a load-balancing endpoint (PORT_HEALTH is the same port: /ping is on it).
    env = {
        **os.environ,
        "MODEL_ID": "tiny-random",
        "CACHE_DIR": str(model_cache_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PORT_HEALTH": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    statuses: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and 200 not in statuses:
            try:
                statuses.append(httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code)
            except httpx.TransportError:
                time.sleep(0.05)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert statuses, output
    assert statuses[-1] == 200, output
    assert set(statuses) <= {204, 200}
