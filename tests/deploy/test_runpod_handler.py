"""deploy/runpod_handler.py under RunPod's own local API server (``--rp_serve_api``), on the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import stream_chat
from tests.test_main import free_port

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = {"messages": [{"role": "user", "content": "Hello"}], "max_new_tokens": 16, "seed": 11}


def worker_env(model_cache_dir: Path) -> dict[str, str]:
    # No RUNPOD_* variables: without them the SDK neither polls for jobs nor pings RunPod.
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNPOD_")}
    env.update({"MODEL_ID": "tiny-random", "CACHE_DIR": str(model_cache_dir), "UVICORN_LOG_LEVEL": "warning"})
    return env


@pytest.fixture(scope="module")
def runpod_api_url(model_cache_dir: Path) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "deploy/runpod_handler.py",
        "--rp_serve_api",
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_port",
        str(port),
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=worker_env(model_cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            process.kill()
            pytest.fail(f"RunPod's API server did not start:\n{process.communicate(timeout=30)[0]}")
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_runsync_returns_the_same_text_as_v1_chat_for_the_same_seed(
    runpod_api_url: str, client: httpx.Client
) -> None:
    over_http = stream_chat(client, PAYLOAD)

    response = httpx.post(f"{runpod_api_url}/runsync", json={"input": PAYLOAD}, timeout=60)

    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "COMPLETED", job
    *texts, last = job["output"]
    assert len(texts) > 1
    assert "".join(chunk["text"] for chunk in texts) == over_http.text
    assert last["done"]["usage"] == over_http.done["usage"]


def test_runsync_returns_an_invalid_input_as_an_error_chunk(runpod_api_url: str) -> None:
    response = httpx.post(f"{runpod_api_url}/runsync", json={"input": {"messages": []}}, timeout=60)

    (chunk,) = response.json()["output"]
    assert chunk["error"]["param"] == "messages"
