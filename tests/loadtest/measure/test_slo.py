"""SLO arithmetic on hand-made records: good requests, goodput, cost per good request, p99."""

from __future__ import annotations

import pytest

from loadtest.clients import StreamTrace
from loadtest.measure.metrics import RequestRecord, build_record
from loadtest.measure.slo import Objectives, goodput


def record(ttft_s: float, e2e_s: float, tokens: int = 11, ok: bool = True) -> RequestRecord:
    trace = StreamTrace()
    trace.add_content("x", ttft_s)
    trace.add_content("y", e2e_s)
    trace.end_s = e2e_s
    trace.usage = {"completion_tokens": tokens, "prompt_tokens": 5}
    if not ok:
        trace.fail("HTTP 503", "http_error")
    return build_record(0, 0, "steady", trace)


def test_objectives_parse_and_refuse_what_they_do_not_know() -> None:
    assert Objectives.parse("ttft=0.5,tpot=0.05,e2e=30").limits_s == {
        "ttft_s": 0.5,
        "tpot_s": 0.05,
        "e2e_s": 30,
    }
    with pytest.raises(ValueError, match="unknown objective 'latency'"):
        Objectives.parse("latency=1")
    with pytest.raises(ValueError, match="not a number"):
        Objectives.parse("ttft=fast")
    with pytest.raises(ValueError, match="above 0"):
        Objectives.parse("ttft=0")


def test_a_good_request_succeeded_and_met_every_objective() -> None:
    objectives = Objectives.parse("ttft=0.5,tpot=0.05")

    # TPOT = (e2e - ttft) / (11 - 1)
    assert objectives.met_by(record(ttft_s=0.4, e2e_s=0.9))  # tpot 0.05
    assert not objectives.met_by(record(ttft_s=0.6, e2e_s=1.0))  # ttft over
    assert not objectives.met_by(record(ttft_s=0.4, e2e_s=1.4))  # tpot 0.1 over
    assert not objectives.met_by(record(ttft_s=0.1, e2e_s=0.2, ok=False))


def test_goodput_counts_only_good_requests_tokens_and_costs_per_good_request() -> None:
    records = [record(0.2, 0.6), record(0.3, 0.7), record(1.5, 2.0), record(0.1, 0.2, ok=False)]

    result = goodput(records, wall_s=10.0, objectives=Objectives.parse("ttft=1"), run_usd=0.02)

    assert [r.meets_slo for r in records] == [True, True, False, False]
    assert result["good"] == 2
    assert result["good_share"] == 0.5
    assert result["goodput_tokens_per_s"] == pytest.approx(2 * 11 / 10.0)
    assert result["usd_per_good_request"] == pytest.approx(0.01)
    assert result["met_at_p99"] is False  # a request failed


def test_p99_is_met_only_when_all_succeed_and_the_99th_percentile_is_within() -> None:
    objectives = Objectives.parse("ttft=1")
    fast = [record(0.1 * i, 2.0) for i in range(1, 10)]  # ttft 0.1 .. 0.9

    assert objectives.met_at_p99(fast)
    assert not objectives.met_at_p99([*fast, record(3.0, 4.0)])  # p99 of ten is near the worst
    assert not objectives.met_at_p99([])
