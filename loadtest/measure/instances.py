"""Requests per serving instance: which replica answered what, and which ones came up during
the run (an autoscaler at work), from the instance id the service puts in every stream's
done event (service/instance.py)."""

from __future__ import annotations

import statistics
from typing import Any

from loadtest.measure.metrics import START_CLOCK_TOLERANCE_S, RequestRecord


def instance_breakdown(records: list[RequestRecord], run_started_at_unix: float) -> list[dict[str, Any]]:
    """One row per instance id, in the order each first answered: its requests, TTFT and
    tokens/s medians, output tokens, and whether it started during the run (a scale-up, or a
    replacement). Empty when the server names no instance (OpenAI peers, RunPod's queue)."""
    by_instance: dict[str, list[RequestRecord]] = {}
    for record in sorted(records, key=lambda record: record.started_at_unix):
        if record.instance_id is not None:
            by_instance.setdefault(record.instance_id, []).append(record)
    rows = []
    for instance_id, served in by_instance.items():
        ok = [record for record in served if record.ok]
        ttfts = [record.ttft_s for record in ok if record.ttft_s is not None]
        rates = [record.tokens_per_s for record in ok if record.tokens_per_s is not None]
        started = next((r.instance_started_at for r in served if r.instance_started_at is not None), None)
        rows.append(
            {
                "instance_id": instance_id,
                "requests": len(served),
                "ok": len(ok),
                "first_request": served[0].index,
                "first_seen_s": served[0].started_at_unix - run_started_at_unix,
                "started_during_run": started is not None
                and started >= run_started_at_unix - START_CLOCK_TOLERANCE_S,
                "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
                "tokens_per_s_p50": statistics.median(rates) if rates else None,
                "output_tokens": sum(record.output_tokens or 0 for record in ok),
            }
        )
    return rows
