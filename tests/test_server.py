"""SIGTERM drains: /ready turns 503, new requests get 503, streams in flight finish, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until_ready
from tests.test_main import free_port


@pytest.fixture
def start_server(model_cache_dir: Path, engine_name: str) -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    def start(
        *flags: str, model: str = "tiny-random", wait_ready: bool = True
    ) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        env = {
            **os.environ,
            "MODEL_ID": model,
            "CACHE_DIR": str(model_cache_dir),
            "ENGINE": engine_name,
        }
        command = [sys.executable, "-m", "service", "--port", str(port), *flags]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        if wait_ready:
            wait_until_ready(url)
        else:
            wait_until_answering(url)
        return process, url

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def admitted(url: str) -> float:
    """Requests running or waiting, from /metrics."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    gauges = ("llm_requests_running ", "llm_requests_waiting ")
    return sum(float(line.split()[1]) for line in lines if line.startswith(gauges))


def wait_until_answering(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} never answered")


def stream_in_background(
    url: str, tokens: int
) -> tuple[threading.Thread, dict[str, object], threading.Event]:
    """Read a /v1/chat stream on a thread; the event is set at its first text."""
    outcome: dict[str, object] = {"texts": 0, "done": None, "error": None, "error_event": None}
    started = threading.Event()

    def read() -> None:
        body = {"messages": "hello", "max_new_tokens": tokens, "ignore_eos": True}
        try:
            with (
                httpx.Client(base_url=url, timeout=60) as http,
                http.stream("POST", "/v1/chat", json=body) as s,
            ):
                event = "message"
                for line in s.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        if event in ("done", "error"):
                            outcome["done" if event == "done" else "error_event"] = json.loads(line[6:])
                        else:
                            outcome["texts"] = int(outcome["texts"]) + 1  # type: ignore[call-overload]
                            started.set()
                        event = "message"
        except httpx.HTTPError as exc:
            outcome["error"] = repr(exc)
            started.set()

    thread = threading.Thread(target=read)
    thread.start()
    return thread, outcome, started


def test_sigterm_lets_streams_in_flight_finish_then_exits_0(start_server) -> None:  # type: ignore[no-untyped-def]
    process, url = start_server("--drain-timeout", "60")
    thread, outcome, started = stream_in_background(url, tokens=1200)
    assert started.wait(30)

    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with httpx.Client(base_url=url, timeout=10) as http:
        ready = http.get("/ready")
        refused = http.post("/v1/chat", json={"messages": "hi", "max_new_tokens": 1})
    thread.join(60)
    exit_code = process.wait(30)

    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "shutting_down"
    assert outcome["error"] is None
    assert isinstance(outcome["done"], dict)
    assert outcome["done"]["usage"]["completion_tokens"] == 1200
    assert exit_code == 0


def test_drain_timeout_ends_long_streams_and_exits_0(start_server) -> None:  # type: ignore[no-untyped-def]
    process, url = start_server("--drain-timeout", "0.5")
    thread, outcome, started = stream_in_background(url, tokens=2000)
    assert started.wait(30)

    signalled_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(30)
    thread.join(30)

    assert exit_code == 0
    assert time.monotonic() - signalled_at < 10
    assert outcome["done"] is None  # cut short by the drain timeout...
    assert outcome["error"] is None  # ...with an error event, not a broken connection
    assert outcome["error_event"]["error"]["code"] == "shutting_down"  # type: ignore[index]


def test_sigterm_drain_finishes_the_queued_stream_too(start_server) -> None:  # type: ignore[no-untyped-def]
    # One slot: the second stream waits for the first. Both were admitted, so both must finish.
    process, url = start_server("--drain-timeout", "60", "--max-concurrency", "1")
    first, first_outcome, first_started = stream_in_background(url, tokens=600)
    assert first_started.wait(30)
    second, second_outcome, _ = stream_in_background(url, tokens=300)
    deadline = time.monotonic() + 10
    while "llm_requests_waiting 1.0" not in httpx.get(f"{url}/metrics").text:
        assert time.monotonic() < deadline, "the second stream never queued"
        time.sleep(0.01)

    process.send_signal(signal.SIGTERM)
    # Asked at once, while the first stream runs: once the second ends the server exits, and a
    # faster decode step (0.3 s for 300 tiny-random tokens) made a later question race the exit.
    with httpx.Client(base_url=url, timeout=10) as http:
        ready_while_draining = http.get("/ready").status_code
    first.join(60)  # the moment the first stream ends is when the queued one used to be cut
    second.join(60)
    exit_code = process.wait(30)

    assert first_outcome["error"] is None
    assert first_outcome["done"]["usage"]["completion_tokens"] == 600  # type: ignore[index]
    assert ready_while_draining == 503
    assert second_outcome["error"] is None, second_outcome["error"]
    assert second_outcome["done"]["usage"]["completion_tokens"] == 300  # type: ignore[index]
    assert exit_code == 0


def test_sigterm_during_the_model_load_exits_at_once(start_server) -> None:  # type: ignore[no-untyped-def]
    # random:mistral-0.5b draws 0.5B random weights: ~9 s of loading on a 2-core CPU.
    process, url = start_server(model="random:mistral-0.5b", wait_ready=False)
    assert httpx.get(f"{url}/ready").json()["status"] == "loading"

    signalled_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(30)

    assert exit_code == 0
    assert time.monotonic() - signalled_at < 3.0  # was 9 s: the exit waited for the load thread


def test_a_second_sigterm_ends_every_request_at_once_with_its_error_body(start_server) -> None:  # type: ignore[no-untyped-def]
    process, url = start_server("--drain-timeout", "60")
    stream, stream_outcome, started = stream_in_background(url, tokens=2000)
    assert started.wait(30)
    whole: dict[str, object] = {}

    def post_non_streaming() -> None:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000, "ignore_eos": True}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        whole.update(status=response.status_code, body=response.json())

    non_streaming = threading.Thread(target=post_non_streaming)
    non_streaming.start()
    deadline = time.monotonic() + 10
    while admitted(url) < 2:  # running, or queued behind the first (the sequential engine)
        assert time.monotonic() < deadline, "the second request never arrived"
        time.sleep(0.01)

    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # draining: both would run to their end
    signalled_again_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(30)
    stopped_s = time.monotonic() - signalled_again_at
    stream.join(30)
    non_streaming.join(30)

    assert stopped_s < 3.0  # was ~7 s
    assert exit_code == 0
    assert stream_outcome["error"] is None  # an error event, not a cut connection
    assert stream_outcome["error_event"]["error"]["code"] == "shutting_down"  # type: ignore[index]
    assert whole["status"] == 503
    assert whole["body"]["error"]["code"] == "shutting_down"  # type: ignore[index]
    output = process.stdout.read() if process.stdout else ""
    assert "Traceback" not in output
