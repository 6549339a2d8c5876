"""/health, /ready and /ping through the model's life: loading, ready, failed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.instance import process_age_s
from service.settings import Settings
from tests.conftest import GatedLoader, serve, stream_chat, wait_until_ready


def test_not_ready_until_the_model_is_loaded(gated_app: tuple[Any, GatedLoader]) -> None:
    app, loader = gated_app

    with serve(app, wait_ready=False) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").status_code == 200
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "loading", "reason": "model is loading"}
        assert http.get("/ping").status_code == 204
        refused = http.post("/v1/chat", json={"messages": "hi"})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "service_unavailable"
        assert "Retry-After" in refused.headers

        loader.gate.set()
        wait_until_ready(url)

        assert http.get("/ready").json()["status"] == "ready"
        assert http.get("/ping").status_code == 200
        assert http.post("/v1/chat", json={"messages": "hi", "max_new_tokens": 2}).status_code == 200


def test_ready_reports_the_startup_phases(client: httpx.Client) -> None:
    body = client.get("/ready").json()

    startup = body["startup"]
    phases = [startup["import_s"], startup["load_s"], startup["warmup_s"]]
    assert all(seconds > 0 for seconds in phases), startup
    # Three phases of one clock: they add up to the total, which is no older than this process.
    assert sum(phases) == pytest.approx(startup["ready_s"])
    assert startup["ready_s"] <= process_age_s()
    # Which process: the same instance the done events name.
    done = stream_chat(client, {"messages": "hi", "max_new_tokens": 1}).done
    assert done is not None
    assert body["instance"] == done["instance"]
    assert (body["model"], body["device"], body["dtype"]) == ("tiny-random", "cpu", "float32")


def test_a_model_that_fails_to_load_is_reported(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    settings = make_settings(model=str(tmp_path / "no-such-model"))

    with serve(create_app(settings), wait_ready=False) as url, httpx.Client(base_url=url) as http:
        for _ in range(200):
            if http.get("/health").status_code == 503:
                break
            threading.Event().wait(0.05)
        health = http.get("/health")
        ready = http.get("/ready")

    assert health.status_code == 503
    assert ready.status_code == 503
    assert ready.json()["status"] == "failed"
    assert "no-such-model" in ready.json()["reason"]


@pytest.mark.parametrize("path", ["/health", "/ready", "/ping", "/v1/models", "/metrics"])
def test_head_answers_like_get_without_a_body(client: httpx.Client, path: str) -> None:
    # Probes (load balancers, aiperf) send HEAD; FastAPI routes declared GET answer it 405 by default.
    get = client.get(path)
    head = client.head(path)

    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_on_a_post_route_is_405(client: httpx.Client) -> None:
    assert client.head("/v1/chat").status_code == 405
    assert client.get("/ready").status_code == 200
