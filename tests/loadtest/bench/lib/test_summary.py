"""The benchmark's arithmetic: level and single-stream summaries, ratios, targets."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.bench.lib.summary import (
    evaluate_targets,
    level_summary,
    merge_repeats,
    ratio,
    single_stream_summary,
)
from loadtest.clients.base import StreamTrace
from loadtest.measure.metrics import RequestRecord, build_record


def record(ttft_s: float, e2e_s: float, tokens: int, error: str | None = None) -> RequestRecord:
    trace = StreamTrace()
    trace.content_arrivals_s = [ttft_s]
    trace.end_s = e2e_s
    trace.usage = {"completion_tokens": tokens}
    if error:
        trace.fail(error, "stream_error")
    return build_record(0, 0, "steady", trace)


def test_aggregate_tokens_per_s_is_all_successful_tokens_over_the_wall_time() -> None:
    records = [record(0.01, 1.0, 100), record(0.03, 1.5, 100), record(0.02, 0.5, 0, error="boom")]

    summary = level_summary(records, wall_s=2.0, tokens=100, concurrency=2)

    assert summary["aggregate_tokens_per_s"] == pytest.approx(100.0)
    assert summary["failed"] == 1
    assert summary["errors"] == ["boom"]
    assert summary["ttft_p50_s"] == pytest.approx(0.02)
    assert summary["ttft_p99_s"] == pytest.approx(0.0298)


def test_a_request_of_another_length_is_counted_as_wrong_length() -> None:
    summary = level_summary([record(0.01, 1.0, 100), record(0.01, 1.0, 99)], 2.0, tokens=100, concurrency=1)

    assert summary["wrong_length"] == 1


def test_single_stream_is_tokens_over_median_durations_and_a_ratio_to_raw() -> None:
    served = [record(0.012, 1.1, 100), record(0.014, 1.25, 100), record(0.013, 2.0, 100)]

    summary = single_stream_summary([1.0, 0.9, 1.2], [0.004, 0.005, 0.003], served, tokens=100)

    assert summary["raw_tokens_per_s"] == pytest.approx(100.0)
    assert summary["served_tokens_per_s"] == pytest.approx(80.0)
    assert summary["served_over_raw"] == pytest.approx(0.8)
    assert summary["served_ttft_s"] == pytest.approx(0.013)
    assert summary["ttft_minus_prefill_s"] == pytest.approx(0.009)


def test_without_raw_runs_the_ratios_are_none() -> None:
    summary = single_stream_summary([], [], [record(0.01, 1.0, 10)], tokens=10)

    assert summary["served_over_raw"] is None
    assert summary["ttft_minus_prefill_s"] is None
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None


def server(
    served_tokens_per_s: float, over_raw: float, ttft_gap_s: float, levels: dict[int, float]
) -> dict[str, Any]:
    return {
        "available": True,
        "single_stream": {
            "served_tokens_per_s": served_tokens_per_s,
            "served_over_raw": over_raw,
            "ttft_minus_prefill_s": ttft_gap_s,
        },
        "levels": [
            {"concurrency": c, "aggregate_tokens_per_s": v, "failed": 0, "wrong_length": 0}
            for c, v in levels.items()
        ],
    }


def targets_by_name(servers: dict[str, Any]) -> dict[str, Any]:
    return {target.name: target for target in evaluate_targets(servers, [1, 4, 8])}


def test_targets_are_met_or_missed_against_the_issue_thresholds() -> None:
    servers = {
        "sequential": server(100.0, 0.96, 0.004, {1: 100, 4: 100, 8: 100}),
        "batched": server(95.0, 0.89, 0.012, {1: 95, 4: 300, 8: 450}),
        "transformers-serve-cb": server(80.0, 0.8, 0.02, {1: 90, 4: 310, 8: 250}),
    }

    targets = targets_by_name(servers)

    assert targets["sequential: served single stream / raw generate tokens/s"].status == "met"
    assert targets["sequential: TTFT - raw prefill (s)"].status == "met"
    assert targets["batched: served single stream / raw generate tokens/s"].status == "missed"  # < 0.9
    assert targets["batched: TTFT - raw prefill (s)"].status == "missed"
    lowest = targets["batched / transformers-serve-cb, lowest over all levels"]
    assert lowest.value == pytest.approx(300 / 310)
    assert lowest.status == "missed"
    assert targets["batched / transformers-serve-cb at 8"].value == pytest.approx(1.8)
    assert targets["batched / transformers-serve-cb at 8"].status == "met"


def test_targets_of_a_server_not_measured_are_not_applicable() -> None:
    servers = {
        "sequential": server(100.0, 0.96, 0.004, {1: 100, 4: 100, 8: 100}),
        "batched": {"available": False, "reason": "no --engine flag"},
    }

    targets = targets_by_name(servers)

    assert targets["batched: served single stream / raw generate tokens/s"].status == "n/a"
    assert targets["batched / transformers-serve-cb at 8"].status == "n/a"
    assert targets["batched / transformers-serve-cb, lowest over all levels"].value is None


def test_a_level_with_failures_does_not_count_toward_a_target() -> None:
    batched = server(95.0, 0.96, 0.004, {8: 450})
    batched["levels"][0]["failed"] = 1
    servers = {"batched": batched, "transformers-serve-cb": server(80.0, 0.8, 0.02, {8: 250})}

    assert targets_by_name(servers)["batched / transformers-serve-cb at 8"].status == "n/a"


def test_repeated_runs_merge_into_medians_level_by_level() -> None:
    runs = [server(100.0, ratio, 0.004, {1: 100 * ratio, 8: 400 * ratio}) for ratio in (0.9, 1.0, 1.2)]
    runs[2]["levels"][1]["failed"] = 1
    for run, ttft in zip(runs, (0.5, 0.3, 0.4), strict=True):
        run["levels"][1]["ttft_p50_s"] = ttft

    merged = merge_repeats(runs)

    assert merged["single_stream"]["served_over_raw"] == 1.0
    assert [level["aggregate_tokens_per_s"] for level in merged["levels"]] == [100.0, 400.0]
    assert merged["levels"][1]["failed"] == 1  # failures add up
    assert merged["repeats"]["8"] == [360.0, 400.0, 480.0]
    assert merged["levels"][1]["ttft_p50_s"] == 0.4
    assert merged["ttft_p50_repeats"]["8"] == [0.5, 0.3, 0.4]
    assert merge_repeats([{"available": False, "reason": "x"}])["reason"] == "x"


def test_the_bandwidth_target_takes_our_fastest_single_stream_and_only_on_a_gpu() -> None:
    servers = {
        "sequential": server(100.0, 0.96, 0.004, {1: 100}),
        "sequential-static": server(150.0, 1.4, 0.004, {1: 150}),
        "transformers-serve-cb": server(400.0, 0.8, 0.02, {1: 400}),  # not ours: not counted
    }
    name = "our best served single stream / memory-bandwidth bound (GPU)"

    on_gpu = {
        t.name: t for t in evaluate_targets(servers, [1], {"device": "cuda", "bound_tokens_per_s": 200.0})
    }
    on_cpu = {
        t.name: t for t in evaluate_targets(servers, [1], {"device": "cpu", "bound_tokens_per_s": 200.0})
    }

    assert on_gpu[name].value == pytest.approx(0.75)
    assert on_gpu[name].status == "met"
    assert on_cpu[name].status == "n/a"


def with_ttft_and_ready(
    result: dict[str, Any], ttft_p50_s: dict[int, float], ready_s: float
) -> dict[str, Any]:
    for level in result["levels"]:
        level["ttft_p50_s"] = ttft_p50_s[level["concurrency"]]
    result["ready_s"] = ready_s
    return result


def test_against_vllm_each_level_needs_its_tokens_and_ttft_and_start_to_ready_a_third() -> None:
    servers = {
        "batched": with_ttft_and_ready(
            server(25.0, 1.0, 0.0, {1: 24, 4: 80, 8: 130}), {1: 0.10, 4: 0.20, 8: 0.30}, ready_s=5.0
        ),
        "vllm": with_ttft_and_ready(
            server(24.0, 1.0, 0.0, {1: 25, 4: 78, 8: 125}), {1: 0.09, 4: 0.25, 8: 0.30}, ready_s=100.0
        ),
    }

    targets = targets_by_name(servers)

    assert targets["batched / vllm tokens/s at 1"].status == "missed"
    assert targets["batched / vllm tokens/s at 4"].value == pytest.approx(80 / 78)
    assert targets["batched / vllm tokens/s at 8"].status == "met"
    assert targets["batched / vllm TTFT p50 at 1"].status == "missed"
    assert targets["batched / vllm TTFT p50 at 4"].status == "met"
    assert targets["batched / vllm TTFT p50 at 8"].status == "met"  # equal is enough
    assert targets["batched / vllm start to ready"].value == pytest.approx(0.05)
    assert targets["batched / vllm start to ready"].status == "met"


def test_without_vllm_there_are_no_vllm_targets() -> None:
    servers = {
        "batched": server(95.0, 0.96, 0.004, {8: 450}),
        "vllm": {"available": False, "reason": "no venv"},
    }

    assert not [name for name in targets_by_name(servers) if "vllm" in name]
