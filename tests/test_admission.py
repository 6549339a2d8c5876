"""Admission control: slots, the waiting queue, 429s under a burst, and the drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from service.admission import AdmissionController
from service.errors import APIError
from tests.conftest import stream_chat


def test_slots_then_queue_then_429() -> None:
    async def scenario() -> None:
        admission = AdmissionController(max_concurrency=1, max_queue=1)
        first = await admission.acquire(timeout_s=None)
        waiter = asyncio.create_task(admission.acquire(timeout_s=5))
        await asyncio.sleep(0)
        assert (admission.running, admission.waiting) == (1, 1)

        with pytest.raises(APIError) as refused:
            await admission.acquire(timeout_s=5)
        assert refused.value.status_code == 429
        assert refused.value.headers == {"Retry-After": "1"}

        admission.release(first)
        admission.release(first)  # releasing twice is harmless
        second = await waiter
        assert (admission.running, admission.waiting) == (1, 0)
        admission.release(second)
        assert await admission.wait_idle(0.1)

    asyncio.run(scenario())


def test_queue_timeout_is_503() -> None:
    async def scenario() -> None:
        admission = AdmissionController(max_concurrency=1, max_queue=4)
        held = await admission.acquire(timeout_s=None)
        with pytest.raises(APIError) as timed_out:
            await admission.acquire(timeout_s=0.05)
        assert timed_out.value.status_code == 503
        assert timed_out.value.code == "queue_timeout"
        assert admission.waiting == 0
        admission.release(held)

    asyncio.run(scenario())


def test_draining_refuses_new_requests_and_waits_for_running_ones() -> None:
    async def scenario() -> None:
        admission = AdmissionController(max_concurrency=2, max_queue=0)
        held = await admission.acquire(timeout_s=None)
        admission.begin_drain()
        with pytest.raises(APIError) as refused:
            await admission.acquire(timeout_s=None)
        assert refused.value.status_code == 503
        assert not await admission.wait_idle(0.05)
        asyncio.get_running_loop().call_later(0.05, admission.release, held)
        assert await admission.wait_idle(1)

    asyncio.run(scenario())


def test_a_burst_gets_only_200s_and_429s_and_every_stream_completes(
    make_server: Callable[..., Any],
) -> None:
    payload = {"messages": "hello", "max_new_tokens": 150, "ignore_eos": True}
    with make_server(max_concurrency=1, max_queue=2) as url:

        def one_request(_: int) -> tuple[int, Any]:
            with httpx.Client(base_url=url, timeout=120) as http:
                result = stream_chat(http, payload)
                return result.status_code, result

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one_request, range(12)))

        statuses = [status for status, _ in results]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(200) >= 1
        assert statuses.count(429) >= 1
        for status, result in results:
            if status == 200:
                assert result.done is not None, result.error
                assert result.done["usage"]["completion_tokens"] == 150
            else:
                assert result.body["error"]["type"] == "rate_limit_error"
        with httpx.Client(base_url=url) as http:
            retry = http.post("/v1/chat", json={"messages": "hi", "max_new_tokens": 1})
            assert retry.status_code == 200
            assert http.get("/ready").status_code == 200


def test_429_carries_retry_after(make_server: Callable[..., Any]) -> None:
    with make_server(max_concurrency=1, max_queue=0) as url, httpx.Client(base_url=url, timeout=60) as http:
        long = {"messages": "hello", "max_new_tokens": 1500, "ignore_eos": True}
        with http.stream("POST", "/v1/chat", json=long) as stream:
            lines = stream.iter_lines()  # keep a reference: dropping it closes the stream
            next(lines)  # the first event: the slot is taken
            refused = http.post("/v1/chat", json={"messages": "hi"})
            refused_openai = http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
            )

    for response in (refused, refused_openai):
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "overloaded"
