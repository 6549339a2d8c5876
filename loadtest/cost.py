"""GPU prices per provider in USD per second, each with its source and date, and the cost of a run.

A run is billed as one GPU for its wall time (first request sent to last answer):
what a single serverless worker costs while it serves the run, its cold start
included, because that happens inside the first request. Providers also bill a
worker's idle time before it scales down (Modal's scaledown window, RunPod's idle
timeout), which a client cannot see and this does not add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Price:
    provider: str
    gpu: str
    usd_per_s: float
    source: str
    date: str | None  # when the figure was read; None when the source is undated


_MODAL = "modal.com/pricing (transcribed)"
_BEAM = "docs.beam.cloud pricing page"
_RUNPOD = "RunPod docs, serverless flex workers"

PRICES: tuple[Price, ...] = (
    Price("modal", "A100-80GB", 0.000694, _MODAL, "2026-07-01"),
    Price("modal", "H100", 0.001097, _MODAL, "2026-07-01"),
    Price("modal", "A10G", 0.000306, _MODAL, "2026-07-01"),
    Price("modal", "L4", 0.000222, _MODAL, "2026-07-01"),
    Price("modal", "L40S", 0.000542, _MODAL, "2026-07-01"),
    Price("beam", "A10G", 0.000292, _BEAM, None),
    Price("beam", "H100", 0.000972, _BEAM, None),
    Price("runpod", "A100-80GB", 0.00076, _RUNPOD, "2026-06-08"),
    Price("runpod", "H100 PRO", 0.00116, _RUNPOD, "2026-06-08"),
    Price("runpod", "L40S", 0.00053, _RUNPOD, "2026-06-08"),
    Price("runpod", "L4", 0.00019, _RUNPOD, "2026-06-08"),
)

# Providers that bill the same table under another protocol.
_PRICE_TABLE_OF = {"runpod-queue": "runpod"}


def _normalize(gpu: str) -> str:
    return gpu.upper().replace("-", "").replace("_", "").replace(" ", "")


def find_price(provider: str, gpu: str) -> Price | None:
    """The table's price of ``gpu`` on ``provider`` (case, spaces and dashes ignored), or None."""
    table = _PRICE_TABLE_OF.get(provider, provider)
    wanted = _normalize(gpu)
    return next((p for p in PRICES if p.provider == table and _normalize(p.gpu) == wanted), None)


def resolve_price(provider: str, gpu: str | None, price_per_second: float | None) -> Price | None:
    """The price a run is costed at: an explicit override, the table, 0 for local, or None (unknown).

    Raises ValueError for a GPU the table does not list for that provider.
    """
    if price_per_second is not None:
        return Price(provider, gpu or "unspecified", price_per_second, "--price-per-second", None)
    if provider == "local":
        return Price("local", gpu or "this machine", 0.0, "your own hardware: no per-second bill", None)
    if gpu is None:
        return None
    price = find_price(provider, gpu)
    if price is None:
        listed = ", ".join(p.gpu for p in PRICES if p.provider == _PRICE_TABLE_OF.get(provider, provider))
        raise ValueError(
            f"no price for {gpu!r} on {provider} (listed: {listed or 'none'}); pass --price-per-second"
        )
    return price


def run_cost(price: Price | None, billed_s: float, requests: int, output_tokens: int) -> dict[str, Any]:
    """Cost of the run, per request (failures cost too) and per 1M output tokens, in USD."""
    if price is None:
        return {"known": False, "note": "no price: pass --gpu or --price-per-second"}
    run_usd = price.usd_per_s * billed_s
    return {
        "known": True,
        **asdict(price),
        "billed_s": billed_s,
        "run_usd": run_usd,
        "per_request_usd": run_usd / requests if requests else None,
        "per_million_output_tokens_usd": run_usd / output_tokens * 1_000_000 if output_tokens else None,
    }
