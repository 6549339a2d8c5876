"""The native /v1/chat client against a scripted SSE server with known timings and byte splits.

Timing tolerances: the server sends each event at its time from the start, but this is a
shared 2-core machine, so an event may arrive late by a scheduling slice (a late one does not
delay the ones after it). Arrivals are never early; we allow 30 ms late for TTFT and the last
event, and 20 ms on the mean gap (a mean over 9 gaps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from loadtest.clients import NativeClient, StreamTrace
from loadtest.clients.providers import PROVIDERS
from loadtest.driver.runner import send_one
from loadtest.measure.metrics import RequestRecord, build_record
from tests.loadtest.scripted_server import (
    Script,
    ScriptedServer,
    done_event,
    scripted_server,
    text_event,
    timed_tokens,
)

TTFT_LATE_TOLERANCE_S = 0.030
GAP_TOLERANCE_S = 0.020


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def measure(
    server: ScriptedServer,
    script: Script,
    timeout_s: float = 10.0,
    provider: str = "local",
    max_tokens: int = 10,
) -> tuple[StreamTrace, RequestRecord]:
    server.scripts["/v1/chat"] = script
    proxy_answers = PROVIDERS[provider].proxy_answers
    client = NativeClient(server.url, max_tokens=max_tokens, proxy_answers=proxy_answers)

    async def send() -> StreamTrace:
        async with httpx.AsyncClient() as http:
            return await send_one(client, http, "hello", timeout_s)

    trace = asyncio.run(send())
    return trace, build_record(0, 0, "steady", trace)


def test_ttft_and_inter_token_latency_match_the_servers_timing(server: ScriptedServer) -> None:
    script = Script(steps=[*timed_tokens(first_s=0.300, gap_s=0.050, count=10), (0.0, done_event(10))])

    _, record = measure(server, script)

    assert record.ok
    assert 0.300 <= record.ttft_s <= 0.300 + TTFT_LATE_TOLERANCE_S
    assert record.itl_s == pytest.approx(0.050, abs=GAP_TOLERANCE_S)
    assert record.e2e_s == pytest.approx(0.300 + 9 * 0.050, abs=TTFT_LATE_TOLERANCE_S + 0.02)
    assert record.tpot_s == pytest.approx((record.e2e_s - record.ttft_s) / 9)
    assert record.output_tokens == 10
    assert record.content_chunks == 10
    assert not record.token_count_mismatch


def test_the_first_byte_is_timed_apart_from_the_first_token(server: ScriptedServer) -> None:
    script = Script(steps=[(0.0, b": connected\n\n"), (0.300, text_event("a")), (0.0, done_event(1))])

    _, record = measure(server, script)

    assert record.time_to_first_byte_s < 0.100
    assert record.ttft_s >= 0.300


def test_an_event_split_across_reads_arrives_with_its_last_part(server: ScriptedServer) -> None:
    event = text_event("split")
    script = Script(steps=[(0.0, event[:7]), (0.200, event[7:-1]), (0.100, event[-1:]), (0.0, done_event(1))])

    trace, record = measure(server, script)

    assert record.content_chunks == 1
    assert record.ttft_s >= 0.300
    assert trace.output_chars == len("split")


def test_events_merged_in_one_read_each_count_and_share_the_arrival_time(server: ScriptedServer) -> None:
    merged = text_event("a") + text_event("b") + text_event("c")
    script = Script(steps=[(0.100, merged), (0.0, done_event(3))])

    trace, record = measure(server, script)

    assert record.content_chunks == 3
    assert len(set(trace.content_arrivals_s)) == 1
    assert record.itl_s == record.event_gap_s == 0.0


def test_itl_is_per_token_when_an_event_carries_several(server: ScriptedServer) -> None:
    # 10 events of 3 tokens, 50 ms apart: the gap between events is 50 ms, a token takes 1/3 of it.
    script = Script(steps=[*timed_tokens(first_s=0.1, gap_s=0.050, count=10), (0.0, done_event(30))])

    _, record = measure(server, script, max_tokens=30)

    assert record.event_gap_s == pytest.approx(0.050, abs=GAP_TOLERANCE_S)
    assert record.itl_s == pytest.approx(9 * 0.050 / 29, abs=GAP_TOLERANCE_S / 3)
    assert record.output_tokens == 30
    assert record.token_count_mismatch  # 30 tokens in 10 events: said, not hidden


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_crlf_cr_and_lf_line_ends_parse_alike(server: ScriptedServer, newline: str) -> None:
    body = (
        text_event("a") + b": ping\n\n" + b"event: ping\ndata: {}\n\n" + text_event("b") + done_event(2)
    ).decode()
    body = body.replace("\n", newline).encode()
    script = Script(steps=[(0.0, body[: len(body) // 2]), (0.0, body[len(body) // 2 :])])

    _, record = measure(server, script)

    assert record.ok
    assert record.content_chunks == 2
    assert record.output_tokens == 2


def test_empty_text_events_are_not_tokens_and_a_count_difference_is_flagged(server: ScriptedServer) -> None:
    script = Script(steps=[(0.100, text_event("")), (0.100, text_event("x")), (0.0, done_event(2))])

    _, record = measure(server, script)

    assert record.ttft_s >= 0.200
    assert record.content_chunks == 1
    assert record.output_tokens == 2  # the server's usage, not the event count
    assert record.output_tokens_source == "usage"
    assert record.token_count_mismatch


def test_a_mid_stream_error_event_fails_the_request_with_its_message(server: ScriptedServer) -> None:
    error = b'event: error\ndata: {"error": {"message": "CUDA out of memory", "type": "server_error"}}\n\n'
    script = Script(steps=[(0.0, text_event("a")), (0.05, error)])

    _, record = measure(server, script)

    assert not record.ok
    assert record.error == "CUDA out of memory"
    assert record.error_type == "stream_error"
    assert record.content_chunks == 1
    assert record.tokens_per_s is None


def test_a_429_is_recorded_with_status_and_message(server: ScriptedServer) -> None:
    body = b'{"error": {"message": "queue full", "type": "rate_limit_error"}}'
    script = Script(status=429, content_type="application/json", steps=[(0.0, body)])

    _, record = measure(server, script)

    assert not record.ok
    assert record.http_status == 429
    assert record.error_type == "http_error"
    assert "queue full" in record.error


def test_a_dropped_connection_is_a_connection_error(server: ScriptedServer) -> None:
    script = Script(steps=[(0.0, text_event("a")), (0.05, text_event("b")[:5])], drop_connection=True)

    _, record = measure(server, script)

    assert not record.ok
    assert record.error_type == "connection_error"
    assert record.content_chunks == 1


def test_a_stream_that_ends_without_done_is_incomplete(server: ScriptedServer) -> None:
    script = Script(steps=[(0.0, text_event("a"))])

    _, record = measure(server, script)

    assert record.error_type == "incomplete_stream"


def test_a_request_past_its_timeout_stops_and_says_so(server: ScriptedServer) -> None:
    script = Script(steps=[(0.0, text_event("a")), (5.0, done_event(2))])

    _, record = measure(server, script, timeout_s=0.3)

    assert record.error_type == "timeout"
    assert record.e2e_s < 1.0


def test_the_request_asks_for_fixed_length_answers(server: ScriptedServer) -> None:
    measure(server, Script(steps=[(0.0, done_event(0))]))

    body = server.requests[0].body
    assert body["max_new_tokens"] == 10
    assert body["ignore_eos"] is True
    assert body["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("provider", "status", "body", "error_type"),
    [
        # Modal's proxy after 150 s without an answer (a long cold start): a redirect to a result URL.
        ("modal", 303, b"", "cold_start_redirect"),
        # RunPod load balancing: no worker ready within 2 minutes; a request past 5.5 minutes.
        ("runpod", 400, b"no workers available", "no_worker_ready"),
        ("runpod", 524, b"<html>timeout</html>", "proxy_timeout"),
        # The same status written by the service itself is the service's own error.
        (
            "runpod",
            400,
            b'{"error": {"message": "bad field", "type": "invalid_request_error"}}',
            "http_error",
        ),
        ("runpod", 502, b"bad gateway", "http_error"),
        # Another provider's proxy never sent it: a plain error, whatever the body.
        ("local", 400, b"no workers available", "http_error"),
        ("local", 303, b"", "http_error"),
        ("modal", 524, b"<html>timeout</html>", "http_error"),
        ("beam", 400, b"bad request", "http_error"),
    ],
)
def test_a_providers_proxy_answer_is_labelled_apart_from_the_services(
    server: ScriptedServer, provider: str, status: int, body: bytes, error_type: str
) -> None:
    script = Script(status=status, content_type="text/plain", steps=[(0.0, body)])

    _, record = measure(server, script, provider=provider)

    assert record.http_status == status
    assert record.error_type == error_type
