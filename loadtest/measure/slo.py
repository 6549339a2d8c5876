"""Service-level objectives: which requests were good enough, and goodput.

``--slo ttft=0.5,tpot=0.05,e2e=30`` (seconds) sets objectives on a request's time to
first token, time per output token and end-to-end latency; any subset may be given. A
request is good when it succeeded and meets every objective. Goodput is what the
good requests delivered: their output tokens per second of the run, and the run's
cost per good request. A run meets the objectives at p99 when every request
succeeded and the 99th percentile of each metric is within its objective: the bar
the search for the highest sustainable load (``--search``) applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadtest.measure.metrics import RequestRecord, describe

# Objective name on the command line -> record field.
FIELDS = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_s", "e2e": "e2e_s"}


@dataclass(frozen=True)
class Objectives:
    limits_s: dict[str, float]  # record field -> most seconds allowed

    @classmethod
    def parse(cls, text: str) -> Objectives:
        """``"ttft=0.5,tpot=0.05"`` -> objectives. Raises ValueError naming what is wrong."""
        limits: dict[str, float] = {}
        for part in text.split(","):
            name, _, value = part.strip().partition("=")
            if name not in FIELDS:
                raise ValueError(f"unknown objective {name!r}: use {', '.join(FIELDS)} (seconds)")
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: not a number of seconds") from None
            if not seconds > 0:
                raise ValueError(f"{name} must be above 0 seconds")
            limits[FIELDS[name]] = seconds
        return cls(limits)

    def met_by(self, record: RequestRecord) -> bool:
        """Succeeded, and within every objective; a metric a request has none of (the TPOT of a
        one-token answer) cannot be missed."""
        return record.ok and all(
            (value := getattr(record, field)) is None or value <= limit
            for field, limit in self.limits_s.items()
        )

    def met_at_p99(self, records: list[RequestRecord]) -> bool:
        if not records or not all(record.ok for record in records):
            return False
        for field, limit in self.limits_s.items():
            stats = describe([value for record in records if (value := getattr(record, field)) is not None])
            if stats is not None and stats["p99"] > limit:
                return False
        return True

    def describe(self) -> str:
        names = {field: name for name, field in FIELDS.items()}
        return ",".join(f"{names[field]}={limit:g}" for field, limit in self.limits_s.items())


def goodput(
    records: list[RequestRecord], wall_s: float, objectives: Objectives, run_usd: float | None
) -> dict[str, Any]:
    """Mark each record's ``meets_slo`` and sum up what the good ones delivered."""
    for record in records:
        record.meets_slo = objectives.met_by(record)
    good = [record for record in records if record.meets_slo]
    good_tokens = sum(record.output_tokens or 0 for record in good)
    return {
        "objectives": objectives.describe(),
        "requests": len(records),
        "good": len(good),
        "good_share": len(good) / len(records) if records else None,
        "goodput_tokens_per_s": good_tokens / wall_s if wall_s > 0 else None,
        "usd_per_good_request": run_usd / len(good) if run_usd is not None and good else None,
        "met_at_p99": objectives.met_at_p99(records),
    }
