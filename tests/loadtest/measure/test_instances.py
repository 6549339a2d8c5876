"""Per-instance breakdown: who answered what, and which instances came up during the run."""

from __future__ import annotations

from loadtest.clients.base import StreamTrace
from loadtest.measure.instances import instance_breakdown
from loadtest.measure.metrics import RequestRecord, build_record
from loadtest.output.report import instance_lines

RUN_STARTED = 1000.0


def served_by(index: int, instance: str | None, started_at: float | None, sent_at: float) -> RequestRecord:
    trace = StreamTrace()
    trace.content_arrivals_s = [0.1, 0.2]
    trace.end_s = 1.0
    trace.usage = {"completion_tokens": 10}
    trace.instance_id = instance
    trace.instance_started_at = started_at
    record = build_record(index, index, "steady", trace)
    record.started_at_unix = sent_at
    return record


def test_instances_in_the_order_they_first_answered_with_scale_ups_marked() -> None:
    records = [
        served_by(0, "old", RUN_STARTED - 600, RUN_STARTED),
        served_by(1, "old", RUN_STARTED - 600, RUN_STARTED + 1),
        served_by(2, "new", RUN_STARTED + 30, RUN_STARTED + 40),
        served_by(3, None, None, RUN_STARTED + 41),  # no instance named: not in the breakdown
    ]

    rows = instance_breakdown(records, RUN_STARTED)

    assert [row["instance_id"] for row in rows] == ["old", "new"]
    assert [row["requests"] for row in rows] == [2, 1]
    assert [row["started_during_run"] for row in rows] == [False, True]
    assert rows[1]["first_request"] == 2
    assert rows[1]["first_seen_s"] == 40.0
    assert rows[0]["output_tokens"] == 20
    assert rows[0]["ttft_p50_s"] == 0.1
    table = "\n".join(instance_lines(rows))
    assert "2 instance(s) answered; 1 started during the run" in table
    assert "`new` (new)" in table


def test_a_server_that_names_no_instance_gives_no_table() -> None:
    records = [served_by(0, None, None, RUN_STARTED)]

    assert instance_breakdown(records, RUN_STARTED) == []
    assert instance_lines([]) == []
