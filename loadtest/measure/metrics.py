"""Per-request records and their summary: the numbers docs/load-testing.md defines.

Times start when the request was due: when it was sent, or with ``--rate`` its
scheduled send time, so that waiting in the client (all streams in flight) counts.

- TTFB: request due to the first byte of the response body.
- TTFT: request due to the first event carrying generated text (role-only and
  empty chunks are not text).
- ITL: per token, (last text - first text) / (output tokens - 1), as guidellm
  defines it; the event gap beside it is the mean gap between text events.
- TPOT: (e2e - TTFT) / (output tokens - 1): decode time per token after the first.
- e2e: request due to the final event (done, [DONE], or the last poll).
- output tokens: the server's usage (completion_tokens); the text-event count is
  kept beside it and a difference is flagged, never silently replaced.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from loadtest.clients.base import StreamTrace

METRICS = (
    "ttft_s",
    "time_to_first_byte_s",
    "e2e_s",
    "itl_s",
    "event_gap_s",
    "tpot_s",
    "tokens_per_s",
    "output_tokens",
    "prompt_tokens",
    "send_delay_s",
)
GROUPS = ("all", "cold", "warm", "warmup", "steady")
# Derived from the server's token count: a count that contradicts the stream is left out.
_TOKEN_METRICS = frozenset({"itl_s", "tpot_s", "tokens_per_s", "output_tokens"})
# The server's start time comes from another clock: another machine's, or Linux's boot
# time, which /proc gives in whole seconds (so a process can look up to 1 s older).
START_CLOCK_TOLERANCE_S = 2.0


@dataclass
class RequestRecord:
    index: int
    prompt_index: int
    phase: str  # "warmup" (the first --cold requests) or "steady"
    started_at_unix: float
    ok: bool
    http_status: int | None
    error: str | None
    error_type: str | None
    time_to_first_byte_s: float | None
    ttft_s: float | None
    e2e_s: float | None
    itl_s: float | None
    event_gap_s: float | None
    tpot_s: float | None
    output_tokens: int | None
    output_tokens_source: str | None  # "usage" or "chunks" (the server sent no usage)
    usage_completion_tokens: int | None
    content_chunks: int
    token_count_mismatch: bool
    # Why the server's token count contradicts the stream (more than asked for, fewer tokens
    # than text events, far more than the text, usage sent twice); None when it does not.
    # Such a request is left out of every token-based number.
    count_problem: str | None
    tokens_per_s: float | None
    finish_reason: str | None
    instance_id: str | None
    instance_started_at: float | None
    cold: bool | None = None  # None: the server does not say which instance served it
    server_timings: dict[str, Any] | None = None
    polls: int | None = None
    prompt_tokens: int | None = None  # the server's usage.prompt_tokens
    target_input_tokens: int | None = None  # --input-tokens: what the prompt was built to be
    max_tokens: int | None = None  # asked for; None: the run's --max-tokens
    send_delay_s: float = 0.0  # --rate: sent this long after its scheduled time (client queueing)
    meets_slo: bool | None = None  # --slo: ok and within every objective; None without --slo
    inter_token_gaps_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_record(index: int, prompt_index: int, phase: str, trace: StreamTrace) -> RequestRecord:
    arrivals = trace.content_arrivals_s
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    usage_tokens = (trace.usage or {}).get("completion_tokens")
    count_problem = count_contradiction(trace, usage_tokens)
    output_tokens = usage_tokens if usage_tokens is not None else (len(arrivals) or None)
    ttft_s = arrivals[0] if arrivals else None
    e2e_s = trace.end_s
    ok = trace.error is None
    counted = ok and count_problem is None
    tpot_s = itl_s = None
    if counted and ttft_s is not None and e2e_s is not None and output_tokens and output_tokens > 1:
        tpot_s = (e2e_s - ttft_s) / (output_tokens - 1)
        itl_s = (arrivals[-1] - ttft_s) / (output_tokens - 1)
    return RequestRecord(
        index=index,
        prompt_index=prompt_index,
        phase=phase,
        started_at_unix=trace.started_at_unix,
        ok=ok,
        http_status=trace.http_status,
        error=trace.error,
        error_type=trace.error_type,
        time_to_first_byte_s=trace.first_byte_s,
        ttft_s=ttft_s,
        e2e_s=e2e_s,
        itl_s=itl_s,
        event_gap_s=sum(gaps) / len(gaps) if gaps else None,
        tpot_s=tpot_s,
        output_tokens=output_tokens,
        output_tokens_source=None
        if output_tokens is None
        else ("usage" if usage_tokens is not None else "chunks"),
        usage_completion_tokens=usage_tokens,
        content_chunks=len(arrivals),
        token_count_mismatch=usage_tokens is not None and usage_tokens != len(arrivals),
        count_problem=count_problem,
        tokens_per_s=output_tokens / e2e_s if counted and output_tokens and e2e_s else None,
        finish_reason=trace.finish_reason,
        instance_id=trace.instance_id,
        instance_started_at=trace.instance_started_at,
        server_timings=trace.server_timings,
        polls=trace.polls,
        prompt_tokens=(trace.usage or {}).get("prompt_tokens"),
        send_delay_s=trace.send_delay_s,
        inter_token_gaps_s=[round(gap, 6) for gap in gaps],
    )


# A token is at least a byte of text but for special ones (EOS, tokens a tokenizer skips): past
# four per byte, plus this allowance, a count is not a count of this text.
_SPECIAL_TOKENS_ALLOWANCE = 16


def count_contradiction(trace: StreamTrace, usage_tokens: int | None) -> str | None:
    """Why the server's completion_tokens cannot be right for what it streamed, or None."""
    if usage_tokens is None:
        return None
    events = len(trace.content_arrivals_s)
    if trace.usage_reports > 1:
        return f"usage sent {trace.usage_reports} times"
    if trace.max_tokens_asked is not None and usage_tokens > trace.max_tokens_asked:
        return f"{usage_tokens} tokens claimed, {trace.max_tokens_asked} asked for"
    if usage_tokens + 1 < events:  # the last event may carry only held-back text
        return f"{usage_tokens} tokens claimed for {events} text events"
    if usage_tokens > 4 * trace.output_bytes + _SPECIAL_TOKENS_ALLOWANCE:
        return f"{usage_tokens} tokens claimed for {trace.output_bytes} bytes of text"
    return None


def mark_cold(records: list[RequestRecord], run_started_at_unix: float) -> None:
    """Cold: the request met an instance that started after the run began, and was sent
    before that instance had answered anyone (so it waited for the start, or was first).

    An instance that was already up when the run began is warm throughout; "after"
    allows START_CLOCK_TOLERANCE_S for the two clocks. Records
    without an instance id (OpenAI peers, failures before the done event) stay None.
    """
    first_answer_at: dict[str, float] = {}
    for record in records:
        if record.instance_id is None:
            continue
        answered_at = record.started_at_unix + (record.ttft_s or record.e2e_s or 0.0)
        first_answer_at[record.instance_id] = min(
            first_answer_at.get(record.instance_id, answered_at), answered_at
        )
    for record in records:
        if record.instance_id is None or record.instance_started_at is None:
            continue
        new_instance = record.instance_started_at >= run_started_at_unix - START_CLOCK_TOLERANCE_S
        record.cold = new_instance and record.started_at_unix < first_answer_at[record.instance_id]


def describe(values: list[float]) -> dict[str, float] | None:
    """mean, std (population), p50, p90, p95, p99 (linear interpolation), min and max; None for no values."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = np.percentile(array, [50, 90, 95, 99])
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def _group_of(record: RequestRecord) -> list[str]:
    groups = ["all", record.phase]
    if record.cold is not None:
        groups.append("cold" if record.cold else "warm")
    return groups


def summarize(records: list[RequestRecord], wall_s: float) -> dict[str, Any]:
    """Statistics of each metric over successful requests, for every group, plus run totals."""
    members: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in records:
        for group in _group_of(record):
            members[group].append(record)
    groups: dict[str, Any] = {}
    for group in GROUPS:
        chosen = members.get(group, [])
        succeeded = [record for record in chosen if record.ok]
        counted = [record for record in succeeded if record.count_problem is None]
        stats = {
            metric: describe(
                [
                    value
                    for record in (counted if metric in _TOKEN_METRICS else succeeded)
                    if (value := getattr(record, metric)) is not None
                ]
            )
            for metric in METRICS
        }
        groups[group] = {"requests": len(chosen), "ok": len(succeeded), "metrics": stats}
    output_tokens = sum(record.output_tokens or 0 for record in records if _counted(record))
    input_tokens = sum(record.prompt_tokens or 0 for record in records if _counted(record))
    steady = [record for record in records if record.phase == "steady"]
    return {
        "requests": len(records),
        "ok": sum(record.ok for record in records),
        "errors": sum(not record.ok for record in records),
        "error_types": _count(record.error_type for record in records if not record.ok),
        "token_count_mismatches": sum(record.token_count_mismatch for record in records),
        "count_problems": sum(record.count_problem is not None for record in records),
        "cold_known": any(record.cold is not None for record in records),
        "wall_s": wall_s,
        "output_tokens": output_tokens,
        "throughput_tokens_per_s": output_tokens / wall_s if wall_s > 0 else None,
        "input_tokens": input_tokens,
        "input_tokens_per_s": input_tokens / wall_s if wall_s > 0 else None,
        "steady": phase_throughput(steady),
        "input_length": input_length_check(records),
        "groups": groups,
    }


def _counted(record: RequestRecord) -> bool:
    return record.ok and record.count_problem is None


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[str(item)] += 1
    return dict(counts)


def phase_throughput(records: list[RequestRecord]) -> dict[str, Any] | None:
    """Tokens/s of one phase over its own span: its first request due to its last answer.

    The whole run's throughput mixes in the warm-up (a cold start, a cache filling);
    the steady phase's is the one to compare across deployments.
    """
    spans = [(r.started_at_unix, r.started_at_unix + r.e2e_s) for r in records if r.e2e_s is not None]
    if not spans:
        return None
    span_s = max(end for _, end in spans) - min(start for start, _ in spans)
    output_tokens = sum(record.output_tokens or 0 for record in records if _counted(record))
    return {
        "requests": len(records),
        "ok": sum(record.ok for record in records),
        "span_s": span_s,
        "output_tokens": output_tokens,
        "throughput_tokens_per_s": output_tokens / span_s if span_s > 0 else None,
    }


def input_length_check(records: list[RequestRecord]) -> dict[str, Any] | None:
    """With ``--input-tokens``: the server's prompt token counts against the target.

    Prompts are sized before the run (loadtest/traffic/sizing.py): exactly with a tokenizer, from a
    calibrated ratio without one; ``off_by_over_10pct`` says how many missed by more.
    """
    targets = [r for r in records if r.target_input_tokens is not None and r.prompt_tokens is not None]
    if not targets:
        return None
    target = targets[0].target_input_tokens
    assert target is not None
    return {
        "target": target,
        "prompt_tokens": describe([float(r.prompt_tokens or 0) for r in targets]),
        "off_by_over_10pct": sum(abs((r.prompt_tokens or 0) - target) > 0.1 * target for r in targets),
    }
