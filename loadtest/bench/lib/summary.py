"""The arithmetic: per-level and single-stream summaries, ratios, and the issue's targets.

Pure functions over plain numbers and dicts, so tests pin them without a server.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from loadtest.bench.lib.servers import OUR_ENGINES, TRANSFORMERS_SERVE_CB, VLLM
from loadtest.measure.metrics import RequestRecord

TTFT_OVER_PREFILL_LIMIT_S = 0.010


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation, as loadtest/measure/metrics.py), None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def level_summary(
    records: list[RequestRecord], wall_s: float, tokens: int, concurrency: int
) -> dict[str, Any]:
    """Aggregate tokens/s (all output tokens of successful requests / the level's wall time) and TTFT.

    A request that succeeded with another length than ``tokens`` is counted in
    ``wrong_length``: then the exact-length mechanism failed and the level does not compare.
    """
    ok = [record for record in records if record.ok]
    ttfts = [record.ttft_s for record in ok if record.ttft_s is not None]
    output_tokens = sum(record.output_tokens or 0 for record in ok)
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "failed": len(records) - len(ok),
        "wrong_length": sum(1 for record in ok if record.output_tokens != tokens),
        "errors": sorted({record.error for record in records if record.error})[:5],
        "wall_s": wall_s,
        "output_tokens": output_tokens,
        "aggregate_tokens_per_s": output_tokens / wall_s if wall_s > 0 else None,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p99_s": percentile(ttfts, 99),
    }


def single_stream_summary(
    raw_generate_s: list[float], raw_prefill_s: list[float], served: list[RequestRecord], tokens: int
) -> dict[str, Any]:
    """Medians of interleaved raw and served runs, and the served ones as ratios to raw.

    Tokens/s are ``tokens`` / the median duration; served TTFT is compared to raw prefill
    (generate() to its first token) as a difference, because that is what the target names.
    """
    ok = [record for record in served if record.ok and record.e2e_s and record.ttft_s is not None]
    raw_tokens_per_s = tokens / statistics.median(raw_generate_s) if raw_generate_s else None
    raw_prefill_median_s = statistics.median(raw_prefill_s) if raw_prefill_s else None
    served_tokens_per_s = tokens / statistics.median(r.e2e_s for r in ok) if ok else None  # type: ignore[misc]
    served_ttft_s = statistics.median(r.ttft_s for r in ok) if ok else None  # type: ignore[misc]
    return {
        "repeats": len(served),
        "failed": len(served) - len(ok),
        "wrong_length": sum(1 for record in ok if record.output_tokens != tokens),
        "raw_tokens_per_s": raw_tokens_per_s,
        "raw_prefill_s": raw_prefill_median_s,
        "served_tokens_per_s": served_tokens_per_s,
        "served_ttft_s": served_ttft_s,
        "served_over_raw": ratio(served_tokens_per_s, raw_tokens_per_s),
        "ttft_minus_prefill_s": None
        if served_ttft_s is None or raw_prefill_median_s is None
        else served_ttft_s - raw_prefill_median_s,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None  # the measured number the threshold applies to
    threshold: str  # as the issue states it
    status: str  # "met", "missed" or "n/a"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status(value: float | None, passes: bool) -> str:
    return "n/a" if value is None else ("met" if passes else "missed")


def _level(servers: dict[str, Any], name: str, concurrency: int) -> dict[str, Any]:
    server = servers.get(name) or {}
    return next((level for level in server.get("levels") or [] if level["concurrency"] == concurrency), {})


def _aggregate(servers: dict[str, Any], name: str, concurrency: int) -> float | None:
    """A level's tokens/s, when every request of it succeeded with the asked length."""
    level = _level(servers, name, concurrency)
    if not level or level["failed"] or level["wrong_length"]:
        return None
    return level["aggregate_tokens_per_s"]


def evaluate_targets(
    servers: dict[str, Any], concurrency_levels: list[int], bound: dict[str, Any] | None = None
) -> list[Target]:
    """The issue's targets, from the per-server results (``{name: {"single_stream", "levels"}}``)
    and the memory-bandwidth bound (bandwidth.memory_bound), which only a GPU run judges.

    A target whose numbers were not measured (a server not available, a level not run) is "n/a".
    """
    targets: list[Target] = []
    for engine, floor in (("sequential", 0.95), ("batched", 0.9)):
        single = (servers.get(engine) or {}).get("single_stream") or {}
        value = single.get("served_over_raw")
        targets.append(
            Target(
                f"{engine}: served single stream / raw generate tokens/s",
                value,
                f">= {floor}",
                _status(value, value is not None and value >= floor),
            )
        )
        gap = single.get("ttft_minus_prefill_s")
        targets.append(
            Target(
                f"{engine}: TTFT - raw prefill (s)",
                gap,
                "<= 0.010",
                _status(gap, gap is not None and gap <= TTFT_OVER_PREFILL_LIMIT_S),
            )
        )
    per_level = [
        ratio(_aggregate(servers, "batched", level), _aggregate(servers, TRANSFORMERS_SERVE_CB, level))
        for level in concurrency_levels
    ]
    lowest = None if not per_level or None in per_level else min(per_level)  # type: ignore[type-var]
    targets.append(
        Target(
            "batched / transformers-serve-cb, lowest over all levels",
            lowest,
            ">= 1 at every level",
            _status(lowest, lowest is not None and lowest >= 1),
        )
    )
    targets.append(_best_single_stream_over_bound(servers, bound))
    at_8 = ratio(_aggregate(servers, "batched", 8), _aggregate(servers, TRANSFORMERS_SERVE_CB, 8))
    targets.append(
        Target(
            "batched / transformers-serve-cb at 8",
            at_8,
            ">= 1.3",
            _status(at_8, at_8 is not None and at_8 >= 1.3),
        )
    )
    if (servers.get(VLLM) or {}).get("available"):
        targets += _against_vllm(servers, concurrency_levels)
    return targets


def _against_vllm(servers: dict[str, Any], concurrency_levels: list[int]) -> list[Target]:
    """Issue #18: the batched engine against vLLM, level by level, and start to ready."""
    targets = []
    for level in concurrency_levels:
        tokens = ratio(_aggregate(servers, "batched", level), _aggregate(servers, VLLM, level))
        targets.append(
            Target(
                f"batched / vllm tokens/s at {level}",
                tokens,
                ">= 1.0",
                _status(tokens, tokens is not None and tokens >= 1.0),
            )
        )
        ours, theirs = _level(servers, "batched", level), _level(servers, VLLM, level)
        ttft = ratio(ours.get("ttft_p50_s"), theirs.get("ttft_p50_s"))
        targets.append(
            Target(
                f"batched / vllm TTFT p50 at {level}",
                ttft,
                "<= 1.0",
                _status(ttft, ttft is not None and ttft <= 1.0),
            )
        )
    ready = ratio((servers.get("batched") or {}).get("ready_s"), servers[VLLM].get("ready_s"))
    targets.append(
        Target(
            "batched / vllm start to ready",
            ready,
            "<= 0.3",
            _status(ready, ready is not None and ready <= 0.3),
        )
    )
    return targets


def _best_single_stream_over_bound(servers: dict[str, Any], bound: dict[str, Any] | None) -> Target:
    """Our fastest served single stream over the decode bound (weights read once per token).

    On a CPU the bound is the copy bandwidth of a cache-sized buffer and Python overhead
    dominates a 10M model, so the target is a GPU one: "n/a" elsewhere.
    """
    name = "our best served single stream / memory-bandwidth bound (GPU)"
    on_gpu = bool(bound) and str(bound.get("device", "")).startswith("cuda")
    rates = [
        (server.get("single_stream") or {}).get("served_tokens_per_s")
        for server_name, server in servers.items()
        if server_name in OUR_ENGINES
    ]
    best = max((rate for rate in rates if rate), default=None)
    value = ratio(best, bound["bound_tokens_per_s"]) if bound and on_gpu else None
    return Target(name, value, ">= 0.6", _status(value, value is not None and value >= 0.6))


def merge_repeats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's repeated measurements as one: the median of every number, level by level.

    Failures and wrong lengths add up; ``repeats`` keeps each run's aggregate tokens/s per
    level, and ``ttft_p50_repeats`` each run's TTFT p50, so that the spread behind a median
    stays visible. A server unavailable in every run is reported as the first run says.
    """
    available = [run for run in runs if run.get("available")]
    if not available:
        return runs[0]
    merged = dict(available[0])
    merged["single_stream"] = _median_of([run["single_stream"] for run in available])
    merged["levels"] = [
        _median_of([run["levels"][index] for run in available])
        for index in range(len(available[0]["levels"]))
    ]
    merged["repeats"] = {
        str(level["concurrency"]): [run["levels"][index]["aggregate_tokens_per_s"] for run in available]
        for index, level in enumerate(available[0]["levels"])
    }
    merged["repeats"]["single"] = [run["single_stream"]["served_over_raw"] for run in available]
    merged["ttft_p50_repeats"] = {
        str(level["concurrency"]): [run["levels"][index].get("ttft_p50_s") for run in available]
        for index, level in enumerate(available[0]["levels"])
    }
    return merged


_SUMMED = ("failed", "wrong_length", "requests", "repeats")


def _median_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, first in parts[0].items():
        values = [part.get(key) for part in parts]
        if key in _SUMMED:
            merged[key] = sum(value or 0 for value in values)
        elif isinstance(first, float) or key.endswith(("_s", "_per_s", "_over_raw")):
            numbers = [value for value in values if isinstance(value, int | float)]
            merged[key] = statistics.median(numbers) if numbers else None
        elif key == "errors":
            merged[key] = sorted({error for value in values for error in value or []})[:5]
        else:
            merged[key] = first
    return merged
