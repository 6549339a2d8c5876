"""Sequential and concurrent load, bounded in requests and in time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from loadtest.clients import NativeClient
from loadtest.runner import LoadOutcome, LoadPlan, run_load
from tests.loadtest.scripted_server import Script, ScriptedServer, done_event, scripted_server, text_event

ANSWER_S = 0.200


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        running.scripts["/v1/chat"] = Script(steps=[(ANSWER_S, text_event("a")), (0.0, done_event(1))])
        yield running


def load(server: ScriptedServer, plan: LoadPlan) -> LoadOutcome:
    return asyncio.run(run_load(NativeClient(server.url, max_tokens=1), ["p0", "p1", "p2"], plan))


def test_sequential_requests_go_one_after_another_in_order(server: ScriptedServer) -> None:
    outcome = load(server, LoadPlan(requests=4, cold=1, concurrency=1))

    assert [record.index for record in outcome.records] == [0, 1, 2, 3]
    assert [record.phase for record in outcome.records] == ["warmup", "steady", "steady", "steady"]
    assert [record.prompt_index for record in outcome.records] == [0, 1, 2, 0]
    assert outcome.wall_s >= 4 * ANSWER_S
    sent = [record.started_at_unix for record in outcome.records]
    assert all(later - earlier >= ANSWER_S for earlier, later in itertools.pairwise(sent))


def test_fixed_concurrency_keeps_that_many_in_flight(server: ScriptedServer) -> None:
    outcome = load(server, LoadPlan(requests=8, cold=0, concurrency=4))

    assert len(outcome.records) == 8
    assert all(record.ok for record in outcome.records)
    assert outcome.wall_s < 4 * ANSWER_S  # two rounds of four, not eight in a row


def test_the_run_stops_by_itself_at_its_time_limit(server: ScriptedServer) -> None:
    started = time.perf_counter()

    outcome = load(server, LoadPlan(requests=1000, cold=0, concurrency=1, max_duration_s=0.5))

    assert time.perf_counter() - started < 2.0
    assert outcome.stopped_by_deadline
    assert 1 <= len(outcome.records) <= 3
