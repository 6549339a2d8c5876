"""The SSE parser, fed bytes the way a network delivers them."""

from __future__ import annotations

import pytest

from loadtest.clients.sse import ServerSentEvent, SSEParser

STREAM = (
    b": comment, a keep-alive ping\n"
    b'data: {"text": "h\xc3\xa9llo"}\n'
    b"\n"
    b"event: done\n"
    b"data: line one\n"
    b"data: line two\n"
    b"\n"
)
EXPECTED = [
    ServerSentEvent(data='{"text": "héllo"}'),
    ServerSentEvent(event="done", data="line one\nline two"),
]


def parse_in_pieces(stream: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += parser.feed(stream[start:end])
    return events


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_gives_the_same_events(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    for cut in range(1, len(stream)):
        assert parse_in_pieces(stream, [cut]) == EXPECTED, f"split at byte {cut}"


def test_byte_by_byte_reads_give_the_same_events() -> None:
    stream = STREAM.replace(b"\n", b"\r\n")
    assert parse_in_pieces(stream, list(range(1, len(stream)))) == EXPECTED


def test_one_read_with_many_events_gives_them_all() -> None:
    assert SSEParser().feed(STREAM * 3) == EXPECTED * 3


def test_an_event_is_dispatched_only_at_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [ServerSentEvent(data="a")]


def test_a_leading_bom_is_skipped_and_fields_without_data_are_not_events() -> None:
    events = SSEParser().feed(b"\xef\xbb\xbfevent: ping\n\ndata: x\nid: 7\nretry: 100\n\n")
    assert events == [ServerSentEvent(data="x", id="7", retry_ms=100)]


def test_a_field_without_a_space_after_the_colon_keeps_its_value() -> None:
    assert SSEParser().feed(b"data:[DONE]\n\n") == [ServerSentEvent(data="[DONE]")]
