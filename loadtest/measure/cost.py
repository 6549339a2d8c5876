"""Prices per provider (GPU, CPU, memory) in USD per second, with source and date; the cost of a run.

A run is billed as one worker for its wall time (first request sent to last answer):
what a single serverless worker costs while it serves the run, its cold start
included, because that happens inside the first request. Modal and Beam bill the
container's CPU cores and memory per second on top of the GPU; the container's size
is what the shims reserve (service/deploy_settings.py) unless ``--cpu-cores`` /
``--memory-gib`` say otherwise. RunPod's serverless price is per GPU worker: its docs
(docs.runpod.io/serverless/pricing) list no separate CPU or memory charge. Providers
also bill a worker's idle time before it scales down (Modal's scaledown window,
RunPod's idle timeout), which a client cannot see and this does not add.
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


OVERRIDE_SOURCE = "--price-per-second"
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


@dataclass(frozen=True)
class ContainerRates:
    """What a provider bills per second for a container's CPU and memory, besides its GPU."""

    provider: str
    usd_per_core_s: float
    usd_per_gib_s: float
    source: str
    date: str | None


CONTAINER_RATES: tuple[ContainerRates, ...] = (
    # Modal bills the larger of the reservation and the use (modal.com/docs/guide/resources).
    ContainerRates("modal", 0.0000131, 0.00000222, _MODAL, None),
    ContainerRates("beam", 0.0000528, 0.0000056, _BEAM, None),
)


@dataclass(frozen=True)
class Container:
    """A container's size and its per-second price (CPU cores x rate + GiB x rate)."""

    cpu_cores: float
    memory_gib: float
    rates: ContainerRates

    @property
    def usd_per_s(self) -> float:
        return self.cpu_cores * self.rates.usd_per_core_s + self.memory_gib * self.rates.usd_per_gib_s


def resolve_container(provider: str, cpu_cores: float | None, memory_gib: float | None) -> Container | None:
    """The container a run is billed for on ``provider``: None where CPU and memory are not billed apart.

    Sizes not given are the ones the shims reserve (service/deploy_settings.py, DEPLOY_* env vars).
    """
    table = _PRICE_TABLE_OF.get(provider, provider)
    rates = next((r for r in CONTAINER_RATES if r.provider == table), None)
    if rates is None:
        return None
    from service.deploy_settings import DeploySettings

    deploy = DeploySettings()
    default_cores, default_gib = {
        "modal": (deploy.modal_cpu, deploy.modal_memory_gib),
        "beam": (deploy.beam_cpu, float(deploy.beam_memory_gib)),
    }[table]
    return Container(
        cpu_cores if cpu_cores is not None else default_cores,
        memory_gib if memory_gib is not None else default_gib,
        rates,
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
        return Price(provider, gpu or "unspecified", price_per_second, OVERRIDE_SOURCE, None)
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


def run_cost(
    price: Price | None,
    billed_s: float,
    requests: int,
    output_tokens: int,
    container: Container | None = None,
) -> dict[str, Any]:
    """Cost of the run (GPU plus container), per request (failures cost too) and per 1M output tokens, in USD.

    A ``--price-per-second`` override is the whole price: no container is added to it.
    """
    if price is None:
        return {"known": False, "note": "no price: pass --gpu or --price-per-second"}
    if price.source == OVERRIDE_SOURCE:
        container = None
    gpu_usd = price.usd_per_s * billed_s
    container_usd = container.usd_per_s * billed_s if container else 0.0
    run_usd = gpu_usd + container_usd
    return {
        "known": True,
        **asdict(price),
        "billed_s": billed_s,
        "gpu_usd": gpu_usd,
        "container": None
        if container is None
        else {
            "cpu_cores": container.cpu_cores,
            "memory_gib": container.memory_gib,
            "usd_per_s": container.usd_per_s,
            "source": container.rates.source,
            "date": container.rates.date,
        },
        "container_usd": container_usd,
        "run_usd": run_usd,
        "per_request_usd": run_usd / requests if requests else None,
        "per_million_output_tokens_usd": run_usd / output_tokens * 1_000_000 if output_tokens else None,
    }
