"""Sends the requests: sequentially or with a fixed number in flight, bounded in count and time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from loadtest.clients import ChatClient, StreamTrace
from loadtest.metrics import RequestRecord, build_record
from loadtest.prompts import prompt_for
from loadtest.warmup import warm_up


@dataclass(frozen=True)
class LoadPlan:
    requests: int = 30
    cold: int = 5  # the first `cold` requests are the warm-up phase, the rest steady state
    concurrency: int = 1  # 1: one after another, the original experiment
    request_timeout_s: float = 600.0
    max_duration_s: float = 3600.0  # no request starts later, and none runs past it


@dataclass
class LoadOutcome:
    records: list[RequestRecord]
    wall_s: float  # first request sent to last answer
    stopped_by_deadline: bool


async def send_one(client: ChatClient, http: httpx.AsyncClient, prompt: str, timeout_s: float) -> StreamTrace:
    """One request, whatever happens: every failure ends up in the trace, none is raised."""
    trace = StreamTrace()
    try:
        async with asyncio.timeout(timeout_s):
            await client.send(http, prompt, trace)
    except TimeoutError:
        trace.fail(f"no complete answer within {timeout_s:.1f} s", "timeout")
    except httpx.TimeoutException as exc:
        trace.fail(f"{type(exc).__name__}: {exc}", "timeout")
    except httpx.HTTPError as exc:
        # A dropped connection mid-stream is RemoteProtocolError or ReadError.
        trace.fail(f"{type(exc).__name__}: {exc}", "connection_error")
    except (ValueError, KeyError, TypeError) as exc:
        trace.fail(f"malformed response: {type(exc).__name__}: {exc}", "malformed_response")
    return trace


async def run_load(
    client: ChatClient,
    prompts: list[str],
    plan: LoadPlan,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> LoadOutcome:
    """Send ``plan.requests`` requests, ``plan.concurrency`` at most at once; records in index order."""
    records: list[RequestRecord] = []
    next_index = 0
    started = time.perf_counter()
    deadline = started + plan.max_duration_s
    stopped_by_deadline = False

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal next_index, stopped_by_deadline
        while next_index < plan.requests:
            remaining_s = deadline - time.perf_counter()
            if remaining_s <= 0:
                stopped_by_deadline = True
                return
            index = next_index
            next_index += 1
            prompt_index, prompt = prompt_for(prompts, index)
            trace = await send_one(client, http, prompt, min(plan.request_timeout_s, remaining_s))
            phase = "warmup" if index < plan.cold else "steady"
            record = build_record(index, prompt_index, phase, trace)
            records.append(record)
            if on_record is not None:
                on_record(record)

    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    timeout = httpx.Timeout(plan.request_timeout_s, connect=min(60.0, plan.request_timeout_s))
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        await warm_up(client, prompts[0])
        started = time.perf_counter()
        deadline = started + plan.max_duration_s
        await asyncio.gather(*(worker(http) for _ in range(plan.concurrency)))
    wall_s = time.perf_counter() - started
    records.sort(key=lambda record: record.index)
    return LoadOutcome(records, wall_s, stopped_by_deadline)
