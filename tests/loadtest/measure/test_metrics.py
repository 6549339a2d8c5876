"""Per-request numbers from what a client saw, the cold/warm rule, and percentiles."""

from __future__ import annotations

import pytest

from loadtest.clients import StreamTrace
from loadtest.measure.metrics import RequestRecord, build_record, describe, mark_cold, summarize

RUN_STARTED_AT = 1_000.0


def trace_of(
    arrivals: list[float], end_s: float, completion_tokens: int | None, **fields: object
) -> StreamTrace:
    trace = StreamTrace(started_at_unix=fields.pop("started_at_unix", RUN_STARTED_AT + 1))  # type: ignore[arg-type]
    trace.http_status = 200
    trace.first_byte_s = arrivals[0] if arrivals else None
    # Text enough for the tokens claimed: a count far over the text is flagged (count_problem).
    piece = "x" * max(1, (completion_tokens or 0) // max(1, len(arrivals)))
    for arrival in arrivals:
        trace.add_content(piece, arrival)
    trace.end_s = end_s
    if completion_tokens is not None:
        trace.usage = {"completion_tokens": completion_tokens}
    return trace


def test_ttft_itl_tpot_and_tokens_per_second_follow_the_definitions() -> None:
    record = build_record(0, 0, "warmup", trace_of([0.3, 0.35, 0.45, 0.5], end_s=0.6, completion_tokens=4))

    assert record.ttft_s == 0.3
    assert record.itl_s == pytest.approx((0.5 - 0.3) / (4 - 1))  # per token
    assert record.event_gap_s == pytest.approx((0.05 + 0.10 + 0.05) / 3)  # per event
    assert record.tpot_s == pytest.approx((0.6 - 0.3) / 3)
    assert record.tokens_per_s == pytest.approx(4 / 0.6)
    assert record.inter_token_gaps_s == pytest.approx([0.05, 0.10, 0.05])


def test_usage_wins_over_the_event_count_and_the_difference_is_flagged() -> None:
    record = build_record(0, 0, "steady", trace_of([0.1, 0.2], end_s=0.3, completion_tokens=3))

    assert record.output_tokens == 3
    assert record.content_chunks == 2
    assert record.token_count_mismatch


def test_a_failed_request_has_no_rate_and_no_tpot() -> None:
    trace = trace_of([0.1, 0.2], end_s=0.3, completion_tokens=None)
    trace.fail("boom", "stream_error")

    record = build_record(0, 0, "steady", trace)

    assert not record.ok
    assert record.tokens_per_s is None
    assert record.tpot_s is None


def record_on(
    instance: str, started_at_instance: float, sent_at: float, ttft_s: float = 0.5
) -> RequestRecord:
    trace = trace_of([ttft_s], end_s=ttft_s + 1, completion_tokens=1, started_at_unix=sent_at)
    trace.instance_id, trace.instance_started_at = instance, started_at_instance
    return build_record(0, 0, "steady", trace)


def test_the_first_request_on_an_instance_started_during_the_run_is_cold_the_next_warm() -> None:
    first = record_on("new", RUN_STARTED_AT + 5, sent_at=RUN_STARTED_AT + 1, ttft_s=20)
    second = record_on("new", RUN_STARTED_AT + 5, sent_at=RUN_STARTED_AT + 30)

    mark_cold([first, second], RUN_STARTED_AT)

    assert first.cold is True
    assert second.cold is False


def test_requests_that_waited_together_for_a_new_instance_are_all_cold() -> None:
    waiting = [
        record_on("new", RUN_STARTED_AT + 5, sent_at=RUN_STARTED_AT + 1 + i, ttft_s=20) for i in range(3)
    ]

    mark_cold(waiting, RUN_STARTED_AT)

    assert [record.cold for record in waiting] == [True, True, True]


def test_an_instance_up_before_the_run_is_warm_and_no_instance_is_unknown() -> None:
    old = record_on("old", RUN_STARTED_AT - 3600, sent_at=RUN_STARTED_AT + 1)
    unknown = build_record(1, 1, "steady", trace_of([0.1], end_s=0.2, completion_tokens=1))

    mark_cold([old, unknown], RUN_STARTED_AT)

    assert old.cold is False
    assert unknown.cold is None


def test_percentiles_interpolate_linearly() -> None:
    stats = describe([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])

    assert stats is not None
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(9.1)
    assert stats["p95"] == pytest.approx(9.55)
    assert stats["p99"] == pytest.approx(9.91)
    assert stats["std"] == pytest.approx(8.25**0.5)  # population: mean of squared deviations 8.25
    assert stats["mean"] == pytest.approx(5.5)
    assert describe([]) is None


def test_the_summary_splits_cold_warm_and_phases_and_counts_only_successes() -> None:
    cold = record_on("new", RUN_STARTED_AT + 5, sent_at=RUN_STARTED_AT + 1, ttft_s=10)
    warm = record_on("new", RUN_STARTED_AT + 5, sent_at=RUN_STARTED_AT + 20, ttft_s=0.5)
    cold.phase = "warmup"
    failed = build_record(2, 2, "steady", trace_of([], end_s=0.1, completion_tokens=None))
    failed.ok = False
    mark_cold([cold, warm, failed], RUN_STARTED_AT)

    summary = summarize([cold, warm, failed], wall_s=30.0)

    assert summary["groups"]["cold"]["metrics"]["ttft_s"]["p50"] == 10
    assert summary["groups"]["warm"]["metrics"]["ttft_s"]["p50"] == 0.5
    assert summary["groups"]["warmup"]["requests"] == 1
    assert summary["groups"]["steady"]["requests"] == 2
    assert summary["groups"]["steady"]["ok"] == 1
    assert summary["output_tokens"] == 2
    assert summary["throughput_tokens_per_s"] == pytest.approx(2 / 30)


def test_the_steady_phase_has_its_own_throughput_over_its_own_span() -> None:
    # Warm-up: one 10 s cold request; steady: two requests of 100 tokens from t=20 to t=24.
    cold = build_record(
        0, 0, "warmup", trace_of([9.0, 10.0], end_s=10.0, completion_tokens=100, started_at_unix=0)
    )
    first = build_record(
        1, 1, "steady", trace_of([0.1, 2.0], end_s=2.0, completion_tokens=100, started_at_unix=20)
    )
    second = build_record(
        2, 2, "steady", trace_of([0.1, 2.0], end_s=2.0, completion_tokens=100, started_at_unix=22)
    )

    summary = summarize([cold, first, second], wall_s=24.0)

    assert summary["throughput_tokens_per_s"] == pytest.approx(300 / 24)
    assert summary["steady"]["span_s"] == pytest.approx(4.0)
    assert summary["steady"]["throughput_tokens_per_s"] == pytest.approx(200 / 4)
