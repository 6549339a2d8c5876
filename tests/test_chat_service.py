"""Deadlines: the queue timeout while a stream waits for a slot, the request timeout during it."""

from __future__ import annotations

import json
import time
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


def test_a_queued_stream_starts_at_once_pings_while_waiting_then_ends_with_queue_timeout(
    make_server: Callable[..., Any],
) -> None:
    # Proxies drop a request whose headers are slow (Beam's gateway: 30 s) or a quiet connection:
    # the 200 goes out before the request has a slot, and comments keep the connection busy.
    with (
        make_server(max_concurrency=1, max_queue=2, queue_timeout=1.0, sse_ping_interval=0.2) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        body = {"messages": "hello", "max_new_tokens": 1800, "ignore_eos": True}
        with http.stream("POST", "/v1/chat", json=body) as long_stream:
            long_lines = long_stream.iter_lines()  # held: a dropped iterator closes the stream
            next(long_lines)
            sent_at = time.perf_counter()
            with http.stream("POST", "/v1/chat", json={"messages": "hi", "max_new_tokens": 1}) as queued:
                headers_after_s = time.perf_counter() - sent_at
                lines = list(queued.iter_lines())
            non_streaming = http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
            )

        assert queued.status_code == 200
        assert headers_after_s < 0.5
        assert sum(line.startswith(": ping") for line in lines) >= 3
        assert "event: error" in lines
        error = json.loads(lines[lines.index("event: error") + 1].removeprefix("data: "))
        assert error["error"]["code"] == "queue_timeout"
        assert non_streaming.status_code == 503
        assert non_streaming.json()["error"]["code"] == "queue_timeout"
        assert "Retry-After" in non_streaming.headers
        assert http.get("/ready").status_code == 200


class CountingRenders:
    """Counts the engine's render_prompt calls (templating and tokenizing the whole prompt)."""

    def __init__(self, engine: Any) -> None:
        self.calls = 0
        self._render = engine.render_prompt
        engine.render_prompt = self

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._render(*args, **kwargs)


def test_a_full_server_refuses_a_huge_prompt_before_templating_it(
    make_settings: Callable[..., Any], engine_class: Callable[..., Any]
) -> None:
    from service.app import create_app
    from tests.conftest import serve

    settings = make_settings(max_concurrency=1, max_queue=0)
    engine = engine_class(settings)
    renders = CountingRenders(engine)
    huge = {"messages": [{"role": "user", "content": "word " * 200_000}], "max_new_tokens": 1}
    with serve(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        body = {"messages": "hello", "max_new_tokens": 1800, "ignore_eos": True}
        with http.stream("POST", "/v1/chat", json=body) as running:
            lines = running.iter_lines()  # held: a dropped iterator closes the stream
            while not next(lines).startswith("data:"):  # text: the one slot is taken
                pass
            calls_before = renders.calls
            refused = http.post("/v1/chat", json=huge)

    assert refused.status_code == 429, refused.text
    assert renders.calls == calls_before  # refused before any templating


def test_a_prompt_far_over_the_context_is_refused_from_a_prefix(
    make_settings: Callable[..., Any], engine_class: Callable[..., Any]
) -> None:
    from service.app import create_app
    from tests.conftest import serve

    settings = make_settings()
    engine = engine_class(settings)
    renders = CountingRenders(engine)
    # ~1 MB of text (the body limit), some 200k tokens for a 2048-token context.
    huge = {"messages": [{"role": "user", "content": "word " * 200_000}], "max_new_tokens": 1}
    with serve(create_app(settings, engine)) as url, httpx.Client(base_url=url, timeout=60) as http:
        calls_before = renders.calls
        refused = http.post("/v1/chat", json=huge)
        calls_after_refusal = renders.calls
        just_over = http.post("/v1/chat", json={"messages": "word " * 1600, "max_new_tokens": 1})

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    assert "at least" in refused.json()["error"]["message"]
    assert calls_after_refusal == calls_before  # never templated nor tokenized whole
    # A prompt near the limit is counted exactly, by the template.
    assert just_over.status_code == 400
    assert "the prompt has" in just_over.json()["error"]["message"]
    assert renders.calls == calls_before + 1


def test_a_lone_request_is_not_held_for_the_arrival_gap(make_server: Callable[..., Any]) -> None:
    """The chat service announces each request (service.engine.arrivals): with nothing else on
    its way, an idle batch loop starts it at once rather than a 1 s gap later."""
    with make_server(arrival_gap_ms=1000) as url, httpx.Client(base_url=url, timeout=60) as http:
        lone = [stream_chat(http, {"messages": "hello", "max_new_tokens": 2}) for _ in range(2)]

    for result in lone:
        assert result.done is not None
        assert result.done["timings"]["queue_s"] < 0.5, result.done["timings"]
