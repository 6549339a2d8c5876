"""Shared fixtures: the real tiny model and real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from httpx_sse import connect_sse

from service.app import create_app
from service.engine.base import Engine
from service.server import uvicorn_config
from service.settings import Settings

pytest_plugins = ["tests.browser"]  # browser, open_page: headless Chromium for the page tests


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build of tiny-random per test session, in a fresh directory."""
    return tmp_path_factory.mktemp("model-cache")


ENGINES = ("sequential", "batched")


@pytest.fixture(scope="session", params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    """Every test that builds a server runs once per engine, so neither can drift."""
    return request.param


@pytest.fixture(scope="session")
def engine_class(engine_name: str) -> Callable[..., Engine]:
    """The engine class under test; takes ``(settings, loader=...)``."""
    if engine_name == "batched":
        from service.engine.batched import BatchedEngine

        return BatchedEngine
    from service.engine.sequential import SequentialEngine

    return SequentialEngine


@pytest.fixture(scope="session")
def make_settings(model_cache_dir: Path, engine_name: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"model": "tiny-random", "cache_dir": model_cache_dir, "engine": engine_name}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def small_mistral_config(tmp_path: Path) -> Callable[..., Path]:
    """``small_mistral_config(vocab_size=...)``: a directory with a tiny Mistral-7B-shaped config.json."""
    from service.engine.random_model import BUNDLED_CONFIGS

    def write(vocab_size: int) -> Path:
        config = json.loads(BUNDLED_CONFIGS["mistral-7b"].read_text())
        config.update(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            head_dim=16,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab_size,
        )
        directory = tmp_path / f"small-mistral-{vocab_size}"
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(config))
        return directory

    return write


@pytest.fixture(scope="session")
def real_model_cache_dir() -> Path:
    """Where the real model (smollm2-135m: 540 MB, ~30 s to fetch and convert) is built: the
    user's cache, shared across test runs, since a build is deterministic and atomic.
    $LLM_SERVING_TEST_CACHE overrides it."""
    override = os.environ.get("LLM_SERVING_TEST_CACHE")
    return Path(override) if override else Settings(model="smollm2-135m").cache_dir


@pytest.fixture(scope="session")
def smollm2_dir(real_model_cache_dir: Path) -> Path:
    from service.engine.smollm2 import ensure_smollm2

    return ensure_smollm2(real_model_cache_dir)


@pytest.fixture(scope="session")
def make_real_settings(
    real_model_cache_dir: Path, smollm2_dir: Path, engine_name: str
) -> Callable[..., Settings]:
    """Settings for the built-in real model on the engine under test (overrides as keywords)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model": "smollm2-135m",
            "cache_dir": real_model_cache_dir,
            "engine": engine_name,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def real_server_url(make_real_settings: Callable[..., Settings]) -> Iterator[str]:
    """A live server on the real model (smollm2-135m), shared by the tests that only send requests."""
    with serve(create_app(make_real_settings())) as url:
        yield url


@pytest.fixture(scope="session")
def real_tokenizer(smollm2_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def tokenizer(settings: Settings) -> Any:
    from transformers import AutoTokenizer

    from service.engine.loader import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(settings))


@contextlib.contextmanager
def serve(app: Any, wait_ready: bool = True, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on 127.0.0.1 (a free port) in a thread."""
    config = uvicorn_config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    try:
        if wait_ready:
            wait_until_ready(base_url, timeout_s)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def wait_until_ready(base_url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} not ready after {timeout_s}s")


@pytest.fixture(scope="session")
def server_url(settings: Settings) -> Iterator[str]:
    """A live server on the tiny model, shared by the tests that only send requests."""
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture
def make_server(
    make_settings: Callable[..., Settings],
) -> Callable[..., contextlib.AbstractContextManager[str]]:
    """``with make_server(max_queue=0) as url:`` a live server with its own settings."""

    def start(**overrides: Any) -> contextlib.AbstractContextManager[str]:
        return serve(create_app(make_settings(**overrides)))

    return start


@pytest.fixture
def client(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=60) as http:
        yield http


@dataclass
class ChatStream:
    """What a client of /v1/chat saw: every event, with the time it arrived."""

    status_code: int
    texts: list[str] = field(default_factory=list)
    arrival_s: list[float] = field(default_factory=list)
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    body: Any = None

    @property
    def text(self) -> str:
        return "".join(self.texts)


def stream_chat(client: httpx.Client, payload: dict[str, Any], path: str = "/v1/chat") -> ChatStream:
    """POST to the native endpoint and read its SSE stream to the end."""
    started = time.perf_counter()
    with connect_sse(client, "POST", path, json=payload) as source:
        response = source.response
        if response.status_code != 200:
            response.read()
            return ChatStream(status_code=response.status_code, body=response.json())
        result = ChatStream(status_code=200)
        for event in source.iter_sse():
            data = json.loads(event.data)
            if event.event == "message":
                result.texts.append(data["text"])
                result.arrival_s.append(time.perf_counter() - started)
            elif event.event == "done":
                result.done = data
            elif event.event == "error":
                result.error = data
        return result


class FaultyGenerate:
    """Makes the next forward pass of a real model raise, whichever engine runs it.

    The failure is in the input embedding, the first thing every forward pass runs: generate(),
    the batch loop's prefills and decode steps through transformers' forward or its own
    (service.engine.llama_forward).
    """

    def __init__(self) -> None:
        self.fail_next = threading.Event()

    def loader(self, settings: Settings) -> Any:
        from service.engine.loader import load_model

        loaded = load_model(settings)
        embedding = loaded.model.get_input_embeddings()
        real_forward = embedding.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self.fail_next.is_set():
                self.fail_next.clear()
                raise RuntimeError("injected failure in the model's forward()")
            return real_forward(*args, **kwargs)

        embedding.forward = forward
        return loaded


@pytest.fixture(scope="session")
def faulty() -> FaultyGenerate:
    return FaultyGenerate()


@pytest.fixture(scope="session")
def faulty_server_url(
    settings: Settings, faulty: FaultyGenerate, engine_class: Callable[..., Engine]
) -> Iterator[str]:
    engine = engine_class(settings, loader=faulty.loader)
    with serve(create_app(settings, engine)) as url:
        yield url


class GatedLoader:
    """Loads the real model only once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, settings: Settings) -> Any:
        from service.engine.loader import load_model

        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return load_model(settings)


@pytest.fixture
def gated_app(
    make_settings: Callable[..., Settings], engine_class: Callable[..., Engine]
) -> tuple[Any, GatedLoader]:
    """An app whose model loads only once the test opens ``loader.gate``: ``app, loader = gated_app``."""
    loader = GatedLoader()
    settings = make_settings()
    return create_app(settings, engine_class(settings, loader=loader)), loader
