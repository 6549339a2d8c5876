"""Prometheus metrics, one registry per app (so several apps in one process never clash)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Buckets from 5 ms to 10 min: TTFT on a warm GPU is tens of ms, a cold queue minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_start_time_seconds, memory and CPU of this process.
        ProcessCollector(registry=self.registry)
        registry = self.registry
        self.time_to_first_token = Histogram(
            "llm_time_to_first_token_seconds",
            "Request received to first text sent.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inter_token_latency = Histogram(
            "llm_inter_token_latency_seconds",
            "Gap between consecutive pieces of text of one stream.",
            buckets=_GAP_BUCKETS,
            registry=registry,
        )
        self.e2e_latency = Histogram(
            "llm_e2e_request_latency_seconds",
            "Request received to its last text sent.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            "llm_queue_time_seconds",
            "Time a request waited for a slot and for the inference thread.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "llm_requests",
            "HTTP requests to the API by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.generations = Counter(
            "llm_generations",
            "Generations by how they ended: length, stop, error, timeout or cancelled.",
            ["outcome"],
            registry=registry,
        )
        self.prompt_tokens = Counter("llm_prompt_tokens", "Prompt tokens processed.", registry=registry)
        self.generation_tokens = Counter(
            "llm_generation_tokens", "Completion tokens generated.", registry=registry
        )
        self.requests_running = Gauge(
            "llm_requests_running", "Requests holding a generation slot.", registry=registry
        )
        self.requests_waiting = Gauge(
            "llm_requests_waiting", "Requests waiting for a generation slot.", registry=registry
        )

    def describe_instance(self, instance_id: str, started_at: float) -> None:
        """``llm_instance_info{id,started_at} 1``: which process a scrape came from, so that
        replicas behind one address (a Ray proxy, a load balancer) can be told apart."""
        info = Info("llm_instance", "The process serving: its id and start time.", registry=self.registry)
        info.info({"id": instance_id, "started_at": f"{started_at:.3f}"})

    def track_admission(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        self.requests_running.set_function(running)
        self.requests_waiting.set_function(waiting)

    def track_startup(self, phases: Callable[[], Mapping[str, float] | None]) -> None:
        """Export ``llm_startup_seconds{phase=...}`` from ``phases()`` once it returns them."""
        self.registry.register(_StartupCollector(phases))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StartupCollector(Collector):
    """``llm_startup_seconds{phase}``: absent until the engine is ready, then fixed."""

    _NAME = "llm_startup_seconds"
    _HELP = "Seconds from process start: import (until loading began), load, warmup, and ready (the total)."

    def __init__(self, phases: Callable[[], Mapping[str, float] | None]) -> None:
        self._phases = phases

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names for the registry's duplicate check, without asking for values.
        yield GaugeMetricFamily(self._NAME, self._HELP, labels=["phase"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        phases = self._phases()
        if not phases:
            return
        family = GaugeMetricFamily(self._NAME, self._HELP, labels=["phase"])
        for phase, seconds in phases.items():
            family.add_metric([phase], seconds)
        yield family
