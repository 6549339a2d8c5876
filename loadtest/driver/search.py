"""The highest load that still meets the objectives: what a buyer of a deployment asks first.

Doubling from a start level until a run misses the objectives at p99 (or the maximum
is reached), then bisecting between the last level that met them and the first that
did not: to one for concurrency, to 10% for a rate. Every probe is a full run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

SEARCH_FILE = "search.json"
RATE_PRECISION = 0.10


@dataclass
class SearchOutcome:
    best: float | None  # None: even the start level missed
    reached_maximum: bool = False  # the maximum met them too: the real limit is higher
    probes: list[tuple[float, bool]] = field(default_factory=list)


def highest_passing(
    meets: Callable[[float], bool], start: float, maximum: float, integer: bool
) -> SearchOutcome:
    """Search the highest level in [start, maximum] for which ``meets(level)`` (a run) is true."""
    outcome = SearchOutcome(best=None)

    def probe(level: float) -> bool:
        passed = meets(level)
        outcome.probes.append((level, passed))
        return passed

    low: float | None = None
    high: float | None = None
    level = min(start, maximum)
    while True:
        if not probe(level):
            high = level
            break
        low = level
        if level >= maximum:
            outcome.best, outcome.reached_maximum = low, True
            return outcome
        level = min(level * 2, maximum)
    if low is None:
        return outcome
    while not _close_enough(low, high, integer):
        middle = (low + high) // 2 if integer else (low + high) / 2
        if probe(middle):
            low = middle
        else:
            high = middle
    outcome.best = low
    return outcome


def _close_enough(low: float, high: float, integer: bool) -> bool:
    return high - low <= 1 if integer else (high - low) / low <= RATE_PRECISION


def write_search(out_dir: Path, dimension: str, objectives: str, outcome: SearchOutcome) -> str:
    """Write OUT/search.json and return the headline."""
    if outcome.best is None:
        headline = f"no {dimension} met {objectives} at p99, not even the first tried"
    else:
        more = " (the highest tried: the limit is higher)" if outcome.reached_maximum else ""
        headline = f"highest {dimension} meeting {objectives} at p99: {outcome.best:g}{more}"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"dimension": dimension, "objectives": objectives, "headline": headline, **asdict(outcome)}
    (out_dir / SEARCH_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return headline
