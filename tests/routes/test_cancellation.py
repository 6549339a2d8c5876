"""A client that leaves frees its slot: the next request starts at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import stream_chat

LONG = 1800  # tokens: several seconds of generation on the tiny model


def next_request_queue_s(http: httpx.Client) -> float:
    result = stream_chat(http, {"messages": "next", "max_new_tokens": 1})
    assert result.done is not None
    return result.done["timings"]["queue_s"]


@pytest.mark.parametrize("endpoint", ["/v1/chat", "/v1/chat/completions"])
def test_disconnect_after_the_first_event_frees_the_slot(
    make_server: Callable[..., Any], endpoint: str
) -> None:
    body = {"messages": [{"role": "user", "content": "hello"}], "ignore_eos": True, "stream": True}
    body |= {"max_new_tokens": LONG} if endpoint == "/v1/chat" else {"max_tokens": LONG}
    with make_server(max_concurrency=1, max_queue=1) as url, httpx.Client(base_url=url, timeout=60) as http:
        with httpx.Client(base_url=url, timeout=60) as leaving:
            if endpoint == "/v1/chat":
                body.pop("stream")
            with leaving.stream("POST", endpoint, json=body) as stream:
                lines = stream.iter_lines()
                assert next(lines).startswith("data: ")
            # leaving the block closed the connection after the first event

        queue_s = next_request_queue_s(http)
        metrics = http.get("/metrics").text

    assert queue_s < 1.0, f"waited {queue_s:.2f}s: the abandoned generation kept its slot"
    assert 'llm_generations_total{outcome="cancelled"} 1.0' in metrics


def test_non_streaming_client_that_leaves_frees_the_slot(make_server: Callable[..., Any]) -> None:
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": LONG, "ignore_eos": True}
    with make_server(max_concurrency=1, max_queue=1) as url, httpx.Client(base_url=url, timeout=60) as http:
        # The client gives up after 0.3 s, well before the generation could finish.
        with httpx.Client(base_url=url, timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/chat/completions", json=body)

        queue_s = next_request_queue_s(http)
        metrics = http.get("/metrics").text

    assert queue_s < 1.0, f"waited {queue_s:.2f}s: the abandoned generation kept its slot"
    assert 'llm_generations_total{outcome="cancelled"} 1.0' in metrics
