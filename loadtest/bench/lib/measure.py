"""Measure one server: start it, warm it up, interleave single streams with raw generate,
run every concurrency level, stop it.

Raw generate runs in this process between the served requests, while the server
idles, so the machine's noise (a shared 2-core box varies by ±25%) hits raw and
served alike and their ratio holds still even when the absolute numbers move.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.bench.lib.raw import RawGenerator
from loadtest.bench.lib.servers import ServerUnderTest
from loadtest.bench.lib.summary import level_summary, single_stream_summary
from loadtest.driver.runner import LoadPlan, run_load, send_one
from loadtest.driver.spawn import spawn_server
from loadtest.measure.metrics import build_record
from loadtest.traffic.prompts import prompt_for

logger = logging.getLogger(__name__)

# transformers serve with continuous batching ignores SIGINT and may take a while on SIGTERM.
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class BenchPlan:
    tokens: int
    concurrency_levels: list[int]
    requests_per_level: int  # 0: twice the concurrency, at least 4
    single_repeats: int
    request_timeout_s: float = 600.0
    start_timeout_s: float = 600.0

    def requests_for(self, concurrency: int) -> int:
        return self.requests_per_level or max(4, 2 * concurrency)


def measure_server(
    server: ServerUnderTest, raw: RawGenerator | None, prompts: list[str], plan: BenchPlan, log_dir: Path
) -> dict[str, Any]:
    """Everything measured on ``server``; a server that is unavailable or fails to start is recorded so."""
    if server.unavailable_reason:
        return {"available": False, "reason": server.unavailable_reason}
    log_path = log_dir / f"{server.name}.log"
    try:
        with spawn_server(
            server.command,
            log_path,
            timeout_s=plan.start_timeout_s,
            ready_path=server.ready_path,
            stop_grace_s=STOP_GRACE_S,
        ) as spawned:
            logger.info("%s ready in %.1f s at %s", server.name, spawned.ready_s, spawned.url)
            result = asyncio.run(_measure(server.client(spawned.url, plan.tokens), raw, prompts, plan))
    except (RuntimeError, TimeoutError) as exc:
        return {"available": False, "reason": f"did not start: {exc}", "command": server.command}
    return {"available": True, "command": server.command, "ready_s": spawned.ready_s, **result}


async def _measure(
    client: Any, raw: RawGenerator | None, prompts: list[str], plan: BenchPlan
) -> dict[str, Any]:
    highest = max(plan.concurrency_levels)
    # Warm-up: first requests pay for lazy set-up (transformers serve builds its paged cache then).
    warmup = LoadPlan(
        requests=min(4, highest),
        cold=0,
        concurrency=min(4, highest),
        request_timeout_s=plan.request_timeout_s,
    )
    await run_load(client, prompts, warmup)
    single = await _single_stream(client, raw, prompts, plan)
    levels = []
    for concurrency in plan.concurrency_levels:
        load = LoadPlan(
            requests=plan.requests_for(concurrency),
            cold=0,
            concurrency=concurrency,
            request_timeout_s=plan.request_timeout_s,
        )
        outcome = await run_load(client, prompts, load)
        levels.append(level_summary(outcome.records, outcome.wall_s, plan.tokens, concurrency))
        logger.info("c=%d: %.0f tokens/s", concurrency, levels[-1]["aggregate_tokens_per_s"] or 0)
    return {"single_stream": single, "levels": levels}


async def _single_stream(
    client: Any, raw: RawGenerator | None, prompts: list[str], plan: BenchPlan
) -> dict[str, Any]:
    raw_generate_s: list[float] = []
    raw_prefill_s: list[float] = []
    served = []
    async with httpx.AsyncClient(timeout=plan.request_timeout_s) as http:
        for index in range(plan.single_repeats):
            prompt_index, prompt = prompt_for(prompts, index)
            if raw is not None:
                # Blocking on purpose: nothing else runs on this loop, and the server idles meanwhile.
                raw_prefill_s.append(raw.prefill_s(prompt))
                raw_generate_s.append(raw.generate_s(prompt))
            trace = await send_one(client, http, prompt, plan.request_timeout_s)
            served.append(build_record(index, prompt_index, "steady", trace))
    return single_stream_summary(raw_generate_s, raw_prefill_s, served, plan.tokens)
