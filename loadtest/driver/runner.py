"""Sends the requests: a fixed number in flight, or at a rate; bounded in count and time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from loadtest.clients import ChatClient, StreamTrace
from loadtest.driver.warmup import warm_up
from loadtest.measure.metrics import RequestRecord, build_record
from loadtest.traffic.arrivals import Arrivals, arrival_offsets_s
from loadtest.traffic.workload import PromptList, RequestSpec, Workload

logger = logging.getLogger(__name__)

# A shared start missed by more than a sleep's overshoot: the process really was late.
_LATE_AFTER_S = 0.01


@dataclass(frozen=True)
class LoadPlan:
    requests: int = 30
    cold: int = 5  # the first `cold` requests are the warm-up phase, the rest steady state
    concurrency: int = 1  # 1: one after another, the original experiment
    request_timeout_s: float = 600.0
    max_duration_s: float = 3600.0  # no request starts later, and none runs past it
    rate_per_s: float | None = None  # set: requests are due at this rate instead (open loop)
    arrivals: Arrivals = "constant"
    seed: int = 0
    max_in_flight: int = 256  # with a rate: streams open at most, to protect the client

    @property
    def connections(self) -> int:
        return self.max_in_flight if self.rate_per_s else self.concurrency


@dataclass
class LoadOutcome:
    records: list[RequestRecord]
    wall_s: float  # first request due to last answer
    stopped_by_deadline: bool
    started_at_unix: float = 0.0  # when the first request was due


async def send_one(
    client: ChatClient,
    http: httpx.AsyncClient,
    prompt: str,
    timeout_s: float,
    max_tokens: int | None = None,
    due: float | None = None,
) -> StreamTrace:
    """One request, whatever happens: every failure ends up in the trace, none is raised."""
    trace = StreamTrace(due=due, max_tokens_asked=max_tokens or getattr(client, "max_tokens", None))
    try:
        async with asyncio.timeout(timeout_s):
            await client.send(http, prompt, trace, max_tokens)
    except TimeoutError:
        trace.fail(f"no complete answer within {timeout_s:.1f} s", "timeout")
    except httpx.TimeoutException as exc:
        trace.fail(f"{type(exc).__name__}: {exc}", "timeout")
    except httpx.HTTPError as exc:
        # A dropped connection mid-stream is RemoteProtocolError or ReadError.
        trace.fail(f"{type(exc).__name__}: {exc}", "connection_error")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # MalformedResponse among them
        trace.fail(f"malformed response: {type(exc).__name__}: {exc}", "malformed_response")
    return trace


async def run_load(
    client: ChatClient,
    workload: Workload | list[str],
    plan: LoadPlan,
    on_record: Callable[[RequestRecord], None] | None = None,
    indices: range | None = None,
    start_at_unix: float | None = None,
) -> LoadOutcome:
    """Send ``plan.requests`` requests (or only ``indices`` of them); records in index order.

    ``start_at_unix`` (several processes share one run): start the clock then, after the warm-up.

    With ``plan.rate_per_s`` request i is due at its place in the arrival schedule and
    sent then, unless ``plan.max_in_flight`` streams are open: then as soon as one ends.
    Otherwise ``plan.concurrency`` requests are in flight, each sent when one ends.
    """
    if isinstance(workload, list):
        workload = PromptList(workload)
    indices = indices if indices is not None else range(plan.requests)
    records: list[RequestRecord] = []
    stopped_by_deadline = False
    limits = httpx.Limits(max_connections=plan.connections, max_keepalive_connections=plan.connections)
    timeout = httpx.Timeout(plan.request_timeout_s, connect=min(60.0, plan.request_timeout_s))

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        await warm_up(client, workload.request(indices[0] if indices else 0).prompt)
        if start_at_unix is not None:
            await asyncio.sleep(max(0.0, start_at_unix - time.time()))
        started = time.perf_counter()
        started_at_unix = time.time()
        late = False
        if start_at_unix is not None and started_at_unix - start_at_unix > _LATE_AFTER_S:
            # This process started after the shared start: its clock still starts then, so
            # its requests are late by that much in every latency and the wall time, not hidden.
            late_s = started_at_unix - start_at_unix
            logger.warning("this process started %.2f s after the shared start time", late_s)
            started -= late_s
            started_at_unix = start_at_unix
            late = True
        deadline = started + plan.max_duration_s

        async def send(index: int, spec: RequestSpec, due: float | None) -> None:
            timeout_s = min(plan.request_timeout_s, deadline - time.perf_counter())
            trace = await send_one(client, http, spec.prompt, timeout_s, spec.max_tokens, due)
            record = build_record(
                index, spec.prompt_index, "warmup" if index < plan.cold else "steady", trace
            )
            record.max_tokens = spec.max_tokens
            record.target_input_tokens = spec.target_input_tokens
            workload.observe(len(spec.prompt.split()), record.prompt_tokens)
            records.append(record)
            if on_record is not None:
                on_record(record)

        if plan.rate_per_s:
            stopped_by_deadline = await _at_rate(send, workload, plan, indices, started, deadline)
        else:
            first_due = started if late else None
            stopped_by_deadline = await _closed_loop(send, workload, plan, indices, deadline, first_due)
    wall_s = time.perf_counter() - started
    records.sort(key=lambda record: record.index)
    return LoadOutcome(records, wall_s, stopped_by_deadline, started_at_unix)


# send(index, spec, due): one request, recorded.
Send = Callable[[int, RequestSpec, float | None], Awaitable[None]]


async def _closed_loop(
    send: Send, workload: Workload, plan: LoadPlan, indices: range, deadline: float, first_due: float | None
) -> bool:
    """``first_due``: when each stream's first request was due (a late start), else each is due when sent."""
    pending = iter(indices)
    stopped_by_deadline = False

    async def worker() -> None:
        nonlocal stopped_by_deadline
        due = first_due
        for index in pending:
            now = time.perf_counter()
            if now >= deadline:
                stopped_by_deadline = True
                return
            await send(index, workload.request(index), due)
            due = None  # the next one is due when this one has ended, i.e. when it is sent

    await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    return stopped_by_deadline


async def _at_rate(
    send: Send, workload: Workload, plan: LoadPlan, indices: range, started: float, deadline: float
) -> bool:
    assert plan.rate_per_s is not None
    offsets = arrival_offsets_s(plan.requests, plan.rate_per_s, plan.arrivals, plan.seed)
    open_streams = asyncio.Semaphore(plan.max_in_flight)
    tasks: list[asyncio.Task[None]] = []

    async def send_and_release(index: int, spec: RequestSpec, due: float) -> None:
        try:
            await send(index, spec, due)
        finally:
            open_streams.release()

    for index in indices:
        due = started + offsets[index]
        if due >= deadline:
            break
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await open_streams.acquire()  # late if every stream is open: the lateness counts
        if time.perf_counter() >= deadline:
            open_streams.release()
            break
        tasks.append(asyncio.create_task(send_and_release(index, workload.request(index), due)))
    else:
        await asyncio.gather(*tasks)
        return False
    await asyncio.gather(*tasks)
    return True
