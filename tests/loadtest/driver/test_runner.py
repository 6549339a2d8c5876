"""Sequential and concurrent load, bounded in requests and in time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from loadtest.clients import NativeClient
from loadtest.driver.runner import LoadOutcome, LoadPlan, run_load
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


def test_at_a_rate_requests_are_sent_on_schedule_whatever_the_answers_take(server: ScriptedServer) -> None:
    outcome = load(server, LoadPlan(requests=5, cold=0, rate_per_s=10.0, arrivals="constant"))

    sent = [record.started_at_unix for record in outcome.records]
    # An open loop: a new request every 100 ms although each answer takes 200 ms.
    assert [round(later - earlier, 2) for earlier, later in itertools.pairwise(sent)] == [0.1] * 4
    # A closed loop would send request 1 only after answer 0, 100 ms late; a busy machine's event
    # loop may add tens of ms to any send, so the bound sits between the two.
    assert all(record.send_delay_s < 0.08 for record in outcome.records)
    assert outcome.wall_s == pytest.approx(0.4 + ANSWER_S, abs=0.1)


def test_a_request_the_client_cannot_send_on_time_counts_its_wait(server: ScriptedServer) -> None:
    # One stream at most: request i is due at i x 100 ms but can leave only when i-1 has ended.
    outcome = load(server, LoadPlan(requests=4, cold=0, rate_per_s=10.0, max_in_flight=1))

    delays = [record.send_delay_s for record in outcome.records]
    assert delays[0] < 0.08  # the others wait 100 ms or more
    for index in (1, 2, 3):
        assert delays[index] == pytest.approx(index * (ANSWER_S - 0.1), abs=0.05)
        # Latency counts from the scheduled time: the client's queue is not hidden.
        assert outcome.records[index].ttft_s == pytest.approx(delays[index] + ANSWER_S, abs=0.05)


@pytest.mark.parametrize("rate_per_s", [None, 10.0])
def test_a_process_that_starts_after_the_shared_start_counts_its_lateness(
    server: ScriptedServer, rate_per_s: float | None
) -> None:
    # --processes: every worker starts its clock at one shared time; one that gets there late
    # (here 0.5 s, as a slow process start would) must not look as fast as the others.
    plan = LoadPlan(requests=2, cold=0, concurrency=1, rate_per_s=rate_per_s, arrivals="constant")
    start_at_unix = time.time() - 0.5

    outcome = asyncio.run(
        run_load(NativeClient(server.url, max_tokens=1), ["p0"], plan, start_at_unix=start_at_unix)
    )

    assert outcome.started_at_unix == start_at_unix
    first = outcome.records[0]
    assert first.send_delay_s >= 0.5
    assert first.ttft_s >= 0.5 + ANSWER_S
    assert outcome.wall_s >= 0.5 + 2 * ANSWER_S if rate_per_s is None else outcome.wall_s >= 0.5 + ANSWER_S


def test_a_process_on_time_waits_for_the_shared_start(server: ScriptedServer) -> None:
    start_at_unix = time.time() + 0.3
    plan = LoadPlan(requests=1, cold=0, concurrency=1)

    outcome = asyncio.run(
        run_load(NativeClient(server.url, max_tokens=1), ["p0"], plan, start_at_unix=start_at_unix)
    )

    assert outcome.records[0].started_at_unix >= start_at_unix
    assert outcome.records[0].send_delay_s < 0.02
