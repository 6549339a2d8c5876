"""deploy/beam.py with the real beam-client, offline.

beam-client wants credentials as soon as a decorator runs, and its gRPC channel
starts connecting as soon as it exists (``subscribe(..., try_to_connect=True)`` in
beta9/channel.py). A dummy BEAM_TOKEN and a gateway address on loopback where
nothing listens keep it off the network (it logs "Connection lost, reconnecting"),
and HOME is a temporary directory so that no config file is read or written.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.engine.sequential import SequentialEngine
from service.settings import Settings
from tests.conftest import serve, stream_chat

ROOT = Path(__file__).resolve().parents[2]
TASK = {"X-TASK-ID": "task-0"}
OFFLINE_BEAM_ENV = {"BEAM_TOKEN": "dummy-token", "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "9"}


@pytest.fixture
def beam_shim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    for name in ("MODEL_ID", "ENGINE", "MAX_CONCURRENCY", "MAX_QUEUE", "API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**OFFLINE_BEAM_ENV, "HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "deploy.beam", raising=False)
    module = importlib.import_module("deploy.beam")
    monkeypatch.delitem(sys.modules, "deploy.beam")
    return module


def test_the_decorator_builds_the_dockerfile_image_on_an_h100(beam_shim: ModuleType) -> None:
    config = beam_shim.server.parent

    assert config.is_asgi
    assert config.name == "llm-serving"
    assert config.gpu == "H100"  # on Beam's list of available GPUs, and priced in loadtest/measure/cost.py
    assert (config.cpu, config.memory) == (4000, 32 * 1024)  # millicores, MiB
    assert config.image.dockerfile_path == str(ROOT / "Dockerfile")
    assert config.image.dockerfile_context_dir == str(ROOT)
    assert config.image.dockerfile_build_args == {"MODEL_ID": "mistralai/Mistral-7B-Instruct-v0.3"}


def test_weights_volume_secrets_warmth_and_autoscaling(beam_shim: ModuleType) -> None:
    config = beam_shim.server.parent

    (volume,) = config.volumes
    assert (volume.name, volume.mount_path) == ("llm-serving-weights", "/models")
    assert [secret.name for secret in config.secrets] == ["HF_TOKEN"]
    assert "HF_HOME=/models/huggingface" in config.env
    assert config.keep_warm_seconds == 300
    assert config.on_start == "deploy.beam:load_engine"
    # Admission settings: max_concurrency 0 = the batched engine's batch of 16, plus 16 queued.
    assert config.concurrent_requests == 32
    assert config.autoscaler.tasks_per_container == 16
    assert config.autoscaler.max_containers == 4
    assert config.task_policy.timeout > 600


def test_the_function_returns_our_app_around_the_on_start_engine(
    beam_shim: ModuleType, make_settings: Callable[..., Settings]
) -> None:
    engine = SequentialEngine(make_settings())
    context = SimpleNamespace(on_start_value=engine)  # what Beam's runner passes

    app = beam_shim.server.local(context)

    assert isinstance(app, FastAPI)
    assert app.state.engine is engine
    assert {"/v1/chat", "/v1/chat/completions", "/health", "/ready"} <= set(app.openapi()["paths"])


def test_on_start_logs_our_info_lines(
    beam_shim: ModuleType, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import logging

    monkeypatch.setenv("MODEL_ID", "tiny-random")
    monkeypatch.setenv("CACHE_DIR", str(model_cache_dir))
    logging.getLogger().setLevel(logging.WARNING)  # what a platform's default leaves

    engine = asyncio.run(beam_shim.load_engine())
    asyncio.run(engine.close())

    assert logging.getLogger("service.engine.base").isEnabledFor(logging.INFO)  # "engine ready" shows


@dataclass
class BeamRunner:
    url: str
    # What the gateway was told, and when (time.perf_counter()).
    tasks: list[tuple[str, float]] = field(default_factory=list)


@pytest.fixture
def app_behind_beams_runner(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[BeamRunner]:
    """Our app wrapped as beta9's runner (beta9/runner/endpoint.py, EndpointManager) wraps it.

    The runner appends its own GET /health, adds TaskLifecycleMiddleware (a
    BaseHTTPMiddleware that reports each task to Beam's gateway over gRPC, and answers
    400 to any request but /health without the X-TASK-ID header Beam's gateway adds)
    and the websocket one. The two gateway calls are replaced: the gateway cannot be reached.
    """
    for name, value in {**OFFLINE_BEAM_ENV, "HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    from beta9 import middleware

    from service.app import create_app

    runner = BeamRunner(url="")

    async def start_task(request: Any, task_id: str) -> None:
        runner.tasks.append((f"start {task_id}", time.perf_counter()))

    async def end_task(request: Any, task_id: str, start_time: float, *args: Any) -> None:
        runner.tasks.append((f"end {task_id}", time.perf_counter()))

    monkeypatch.setattr(middleware, "_start_task", start_task)
    monkeypatch.setattr(middleware, "_end_task", end_task)

    app = create_app(settings)
    app.add_middleware(middleware.TaskLifecycleMiddleware)
    app.add_middleware(middleware.WebsocketTaskLifecycleMiddleware)

    @app.get("/health")
    async def runner_health() -> dict[str, str]:  # the runner's, registered after ours
        return {"runner": "beta9"}

    with serve(app, wait_ready=False) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/ready", headers=TASK, timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "not ready after 60s"
            time.sleep(0.05)
        runner.url = url
        runner.tasks.clear()
        yield runner


def test_without_beams_task_header_only_health_answers(app_behind_beams_runner: BeamRunner) -> None:
    assert httpx.get(f"{app_behind_beams_runner.url}/health").status_code == 200
    assert httpx.get(f"{app_behind_beams_runner.url}/ready").status_code == 400


def test_our_routes_answer_behind_beams_runner(app_behind_beams_runner: BeamRunner) -> None:
    with httpx.Client(base_url=app_behind_beams_runner.url, timeout=60, headers=TASK) as http:
        health = http.get("/health")
        stream = stream_chat(http, {"messages": "hi", "max_new_tokens": 8, "ignore_eos": True})
        completion = http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        )

    assert health.json() == {"status": "ok"}, "our /health is matched first; the runner's is shadowed"
    assert stream.status_code == 200
    assert len(stream.texts) > 1, "the middleware passes the stream through event by event"
    assert stream.done is not None
    assert stream.done["usage"]["completion_tokens"] == 8
    assert completion.status_code == 200


def test_beam_counts_a_stream_as_done_when_its_headers_go_out(app_behind_beams_runner: BeamRunner) -> None:
    runner = app_behind_beams_runner
    with httpx.Client(base_url=runner.url, timeout=60, headers=TASK) as http:
        sent_at = time.perf_counter()
        stream = stream_chat(http, {"messages": "hi", "max_new_tokens": 64, "ignore_eos": True})
    last_text_arrived_at = sent_at + stream.arrival_s[-1]

    (start, _), (end, ended_at) = runner.tasks
    assert (start, end) == ("start task-0", "end task-0")
    # NOTE: the README's Beam section relies on this: Beam's task ends before the stream does.
    assert ended_at < last_text_arrived_at


def test_beam_deploy_imports_the_shim_and_stops_at_the_gateway(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BEAM_", "BETA9_"))}
    env.update({**OFFLINE_BEAM_ENV, "HOME": str(tmp_path)})

    result = subprocess.run(
        [str(Path(sys.executable).with_name("beam")), "deploy", "deploy/beam.py:server"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Preparing image" in output, output  # past the import of deploy/beam.py
    assert "Unable to connect to gateway" in output, output
    assert "Failed to import" not in output
