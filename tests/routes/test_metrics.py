"""GET /metrics: the histograms, counters and gauges move as requests go through."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatedLoader, serve, stream_chat, wait_until_ready

GATE_SHUT_S = 0.3


def scrape(http: httpx.Client) -> dict[str, float]:
    """Every sample as 'name{label="v",...}' -> value."""
    samples = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_metrics_move_with_requests(make_server: Callable[..., Any]) -> None:
    with make_server() as url, httpx.Client(base_url=url, timeout=60) as http:
        before = scrape(http)
        result = stream_chat(http, {"messages": "hello", "max_new_tokens": 20, "ignore_eos": True})
        http.post("/v1/chat", json={"messages": []})
        after = scrape(http)

    assert result.done is not None
    prompt_tokens = result.done["usage"]["prompt_tokens"]

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('llm_requests_total{endpoint="/v1/chat",status="200"}') == 1
    assert delta('llm_requests_total{endpoint="/v1/chat",status="400"}') == 1
    assert delta('llm_generations_total{outcome="length"}') == 1
    assert delta("llm_prompt_tokens_total") == prompt_tokens
    assert delta("llm_generation_tokens_total") == 20
    for histogram in (
        "llm_time_to_first_token_seconds",
        "llm_e2e_request_latency_seconds",
        "llm_queue_time_seconds",
    ):
        assert delta(f"{histogram}_count") == 1, histogram
    assert delta("llm_inter_token_latency_seconds_count") == len(result.texts) - 1
    assert after["llm_requests_running"] == 0
    assert after["llm_requests_waiting"] == 0
    assert after["process_start_time_seconds"] > 0


def test_a_scrape_says_which_instance_it_came_from(make_server: Callable[..., Any]) -> None:
    with make_server() as url, httpx.Client(base_url=url, timeout=60) as http:
        instance = http.get("/ready").json()["instance"]
        samples = scrape(http)

    started_at = f"{instance['started_at']:.3f}"
    assert samples[f'llm_instance_info{{id="{instance["id"]}",started_at="{started_at}"}}'] == 1


def test_startup_phases_are_exported_once_ready(gated_app: tuple[Any, GatedLoader]) -> None:
    app, loader = gated_app

    with serve(app, wait_ready=False) as url, httpx.Client(base_url=url, timeout=30) as http:
        gate_shut_at = time.monotonic()  # loading began before the server started serving
        while_loading = scrape(http)
        time.sleep(max(0.0, gate_shut_at + GATE_SHUT_S - time.monotonic()))
        loader.gate.set()
        wait_until_ready(url)
        once_ready = scrape(http)
        startup = http.get("/ready").json()["startup"]

    assert not [name for name in while_loading if name.startswith("llm_startup_seconds")]
    for phase in ("import", "load", "warmup", "ready"):
        assert once_ready[f'llm_startup_seconds{{phase="{phase}"}}'] == startup[f"{phase}_s"], phase
    # The loader waited for the gate: that time is the load phase's, not another's.
    assert startup["load_s"] >= GATE_SHUT_S
