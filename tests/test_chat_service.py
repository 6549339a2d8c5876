"""Deadlines: the queue timeout before the stream, the request timeout during it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import stream_chat


def test_request_timeout_ends_the_stream_with_an_error_event(make_server: Callable[..., Any]) -> None:
    with make_server(request_timeout=0.5) as url, httpx.Client(base_url=url, timeout=60) as http:
        timed_out = stream_chat(http, {"messages": "hello", "max_new_tokens": 1800, "ignore_eos": True})
        after = stream_chat(http, {"messages": "next", "max_new_tokens": 1})

    assert timed_out.status_code == 200
    assert timed_out.done is None
    assert timed_out.error is not None
    assert timed_out.error["error"]["code"] == "request_timeout"
    assert 0 < len(timed_out.texts) < 1800
    assert timed_out.arrival_s[-1] < 2.0
    assert after.done is not None
    assert after.done["timings"]["queue_s"] < 0.5, "the timed-out generation kept running"


def test_non_streaming_request_timeout_is_504(make_server: Callable[..., Any]) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1800, "ignore_eos": True}
    with make_server(request_timeout=0.5) as url, httpx.Client(base_url=url, timeout=60) as http:
        response = http.post("/v1/chat/completions", json=body)

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "request_timeout"


def test_queue_timeout_is_503_before_the_stream(make_server: Callable[..., Any]) -> None:
    with (
        make_server(max_concurrency=1, max_queue=1, queue_timeout=0.3) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        body = {"messages": "hello", "max_new_tokens": 1800, "ignore_eos": True}
        with http.stream("POST", "/v1/chat", json=body) as long_stream:
            lines = long_stream.iter_lines()
            next(lines)
            waited = http.post("/v1/chat", json={"messages": "hi", "max_new_tokens": 1})

        assert waited.status_code == 503
        assert waited.json()["error"]["code"] == "queue_timeout"
        assert "Retry-After" in waited.headers
        assert http.get("/ready").status_code == 200
