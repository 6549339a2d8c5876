"""Admission control: slots, the waiting queue, 429s under a burst, and the drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from service.admission import AdmissionController, Ticket, TicketState
from service.errors import APIError
from tests.conftest import stream_chat


async def admitted_with_slot(admission: AdmissionController) -> Ticket:
    ticket = admission.admit()
    await admission.take_slot(ticket)
    return ticket


def test_slots_then_queue_then_429() -> None:
    async def scenario() -> None:
        admission = AdmissionController(max_concurrency=1, max_queue=1)
        first = await admitted_with_slot(admission)
        second = admission.admit()
        waiter = asyncio.create_task(admission.take_slot(second))
        await asyncio.sleep(0)
        assert (admission.running, admission.waiting) == (1, 1)

        with pytest.raises(APIError) as refused:
            admission.admit()
        assert refused.value.status_code == 429
        assert refused.value.headers == {"Retry-After": "1"}

        admission.free_slot(first)
        admission.free_slot(first)  # freeing twice is harmless
        await waiter
        assert (admission.running, admission.waiting) == (1, 0)
        admission.leave(first)
        admission.leave(first)  # so is leaving twice
        admission.leave(second)
        assert (admission.running, admission.waiting, admission.admitted) == (0, 0, 0)
        assert await admission.wait_idle(0.1)

    asyncio.run(scenario())


def test_a_request_that_leaves_while_waiting_gives_its_place_back() -> None:
    async def scenario() -> None:
        admission = AdmissionController(max_concurrency=1, max_queue=1)
        held = await admitted_with_slot(admission)
        waiting = admission.admit()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await admission.take_slot(waiting)
        admission.leave(waiting)
        assert (admission.running, admission.waiting, admission.admitted) == (1, 0, 1)

        admission.leave(held)
        assert await admission.wait_idle(0.1)
        assert (await admitted_with_slot(admission)).state is TicketState.RUNNING

    asyncio.run(scenario())


def test_draining_waits_for_every_admitted_request_running_waiting_or_finishing() -> None:
    async def scenario() -> None:
        admission = AdmissionController(max_concurrency=1, max_queue=1)
        running = await admitted_with_slot(admission)
        waiting = admission.admit()
        waiter = asyncio.create_task(admission.take_slot(waiting))
        admission.begin_drain()
        with pytest.raises(APIError) as refused:
            admission.admit()
        assert refused.value.status_code == 503

        admission.free_slot(running)
        admission.leave(running)
        # The waiting request takes the freed slot: the server must not look idle meanwhile.
        assert not await admission.wait_idle(0.05)
        await waiter
        admission.free_slot(waiting)
        assert waiting.state is TicketState.FINISHING
        assert not await admission.wait_idle(0.05), "its response is still being written"
        admission.leave(waiting)
        assert await admission.wait_idle(0.05)

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
