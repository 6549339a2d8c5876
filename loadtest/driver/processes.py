"""One run spread over worker processes, its records merged as if one client had sent them.

One asyncio loop parses every stream's events in one Python thread: past some number
of streams it falls behind, and the gaps and latencies it records grow with its own
delay, not the server's (docs/load-testing.md, beyond one process, has the measured
limit). ``--processes N`` gives each process every N-th request (process k sends
requests k, k+N, ...), an N-th of the streams, the same arrival schedule and the same
start time, so the merged run is the one asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from loadtest.clients import ChatClient
from loadtest.driver.runner import LoadOutcome, LoadPlan, run_load
from loadtest.traffic.workload import Workload

# Time for the workers to start and warm up before the shared clock starts.
_START_MARGIN_S = 3.0


def _run_share(
    client: ChatClient, workload: Workload, plan: LoadPlan, indices: range, start_at_unix: float
) -> LoadOutcome:
    return asyncio.run(run_load(client, workload, plan, indices=indices, start_at_unix=start_at_unix))


def run_load_in_processes(
    client: ChatClient, workload: Workload, plan: LoadPlan, processes: int
) -> LoadOutcome:
    """Run ``plan`` from ``processes`` worker processes; records in index order, wall time of the whole."""
    share = dataclasses.replace(
        plan,
        concurrency=max(1, math.ceil(plan.concurrency / processes)),
        max_in_flight=max(1, math.ceil(plan.max_in_flight / processes)),
    )
    if plan.concurrency % processes and not plan.rate_per_s:
        raise ValueError(f"--concurrency {plan.concurrency} does not split evenly over {processes} processes")
    start_at_unix = time.time() + _START_MARGIN_S
    shares = [range(k, plan.requests, processes) for k in range(processes)]
    # spawn, not fork: a forked child would inherit the parent's threads' locks (the progress bar's).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [
            pool.submit(_run_share, client, workload, share, indices, start_at_unix) for indices in shares
        ]
        outcomes = [future.result() for future in futures]
    records = sorted((record for outcome in outcomes for record in outcome.records), key=lambda r: r.index)
    return LoadOutcome(
        records=records,
        wall_s=max(outcome.wall_s for outcome in outcomes),
        stopped_by_deadline=any(outcome.stopped_by_deadline for outcome in outcomes),
        started_at_unix=start_at_unix,
    )
