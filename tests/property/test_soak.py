"""Soak: a minute of mixed clients (good, bad, overloading, disconnecting) against one server.

Bounded in time (SOAK_SECONDS, default 45) and in concurrency. Afterwards the
server is ready and idle, no thread is left behind, memory growth is bounded,
and every good request that was admitted completed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "45"))
CLIENTS = 8


POOLED_THREAD_PREFIXES = ("asyncio_", "uvloop_", "AnyIO worker thread")


def threads_by_kind() -> collections.Counter[str]:
    # Executor workers (asyncio.to_thread under asyncio or uvloop, anyio's pool) belong
    # to bounded pools, not to requests: they are counted apart from everything else.
    return collections.Counter(
        "pool" if thread.name.startswith(POOLED_THREAD_PREFIXES) else thread.name
        for thread in threading.enumerate()
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def good_stream(http: httpx.AsyncClient, tally: collections.Counter[str]) -> None:
    body = {"messages": "soak", "max_new_tokens": 24, "ignore_eos": True}
    async with http.stream("POST", "/v1/chat", json=body) as response:
        if response.status_code == 429:
            tally["429"] += 1
            return
        assert response.status_code == 200, response.status_code
        lines = [line async for line in response.aiter_lines()]
    done = [json.loads(lines[i + 1][6:]) for i, line in enumerate(lines) if line == "event: done"]
    assert done, lines[-4:]
    assert done[0]["usage"]["completion_tokens"] == 24
    tally["completed"] += 1


async def good_openai(http: httpx.AsyncClient, tally: collections.Counter[str]) -> None:
    body = {"messages": [{"role": "user", "content": "soak"}], "max_tokens": 16, "ignore_eos": True}
    response = await http.post("/v1/chat/completions", json=body)
    if response.status_code == 429:
        tally["429"] += 1
        return
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 16
    tally["completed"] += 1


async def bad_request(http: httpx.AsyncClient, tally: collections.Counter[str]) -> None:
    body = random.choice([b"{broken", b'{"messages": []}', b'{"messages": "x", "top_p": 7}'])
    response = await http.post("/v1/chat", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    tally["400"] += 1


async def disconnecting(http: httpx.AsyncClient, tally: collections.Counter[str]) -> None:
    body = {"messages": "leave", "max_new_tokens": 1000, "ignore_eos": True}
    async with http.stream("POST", "/v1/chat", json=body) as response:
        if response.status_code == 200:
            async for _ in response.aiter_lines():
                break  # leave after the first line: the connection closes
        tally["disconnected" if response.status_code == 200 else str(response.status_code)] += 1


async def client_loop(url: str, deadline: float, tally: collections.Counter[str]) -> None:
    actions = [good_stream, good_stream, good_openai, bad_request, disconnecting]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while time.monotonic() < deadline:
            await random.choice(actions)(http, tally)


def test_soak_mixed_clients(make_server: Callable[..., Any]) -> None:
    random.seed(0)
    with make_server(max_concurrency=1, max_queue=4, request_timeout=30) as url:
        httpx.post(f"{url}/v1/chat", json={"messages": "warm", "max_new_tokens": 4}).raise_for_status()
        threads_before = threads_by_kind()
        rss_before = rss_mb()
        tally: collections.Counter[str] = collections.Counter()

        async def run() -> None:
            deadline = time.monotonic() + SOAK_SECONDS
            await asyncio.gather(*(client_loop(url, deadline, tally) for _ in range(CLIENTS)))

        asyncio.run(run())
        time.sleep(0.5)  # let the last disconnects be noticed
        with httpx.Client(base_url=url) as http:
            ready = http.get("/ready").status_code
            metrics = http.get("/metrics").text
        threads_after = threads_by_kind()
        rss_growth = rss_mb() - rss_before

    assert ready == 200
    assert "llm_requests_running 0.0" in metrics
    assert "llm_requests_waiting 0.0" in metrics
    assert 'status="5' not in metrics, "a request got a 5xx"
    assert tally["completed"] > 20, tally
    assert tally["400"] > 5, tally
    assert tally["disconnected"] > 5, tally
    pool_limit = min(32, (os.cpu_count() or 1) + 4) + 40  # the default executor's size + anyio's
    assert threads_after["pool"] <= pool_limit, threads_after
    threads_before.pop("pool", None)
    threads_after.pop("pool", None)
    assert threads_after == threads_before, "threads left behind"
    assert rss_growth < 200, f"memory grew by {rss_growth:.0f} MB"
