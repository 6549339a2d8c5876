"""An incremental Server-Sent Events parser that is fed bytes as they arrive.

httpx-sse parses correctly but hides the bytes: a load tester needs the time the
first body byte arrived and the time of the read that completed each event, so the
caller owns the reads and this module only turns bytes into events
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry_ms: int | None = None


class SSEParser:
    """Feed it reads with :meth:`feed`; it returns the events those bytes completed.

    Handles CRLF, LF and CR line ends (also a CRLF split across two reads), events
    split across reads or several in one read, comments (``:`` lines, used as pings),
    multi-line data, a leading BOM and UTF-8 characters split across reads.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # text after the last complete line
        self._skipped_lf = False  # the previous read ended in CR: a leading LF belongs to it
        self._at_start = True
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if self._at_start and text:
            text = text.removeprefix("\ufeff")
            self._at_start = False
        if self._skipped_lf and text.startswith("\n"):
            text = text[1:]
        self._skipped_lf = False
        events: list[ServerSentEvent] = []
        buffer = self._pending + text
        start = 0
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            ends = [position for position in (cr, lf) if position != -1]
            if not ends:
                break
            end = min(ends)
            line = buffer[start:end]
            if buffer[end] == "\r":
                if end + 1 == len(buffer):
                    self._skipped_lf = True  # a CRLF may be split across reads
                elif buffer[end + 1] == "\n":
                    end += 1
            start = end + 1
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        self._pending = buffer[start:]
        return events

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: servers send them as keep-alive pings
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        # Per the spec an event with no data lines is not dispatched (only its fields reset).
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message", data="\n".join(self._data), id=self._id, retry_ms=self._retry_ms
        )
        self._event = ""
        self._data = []
        return event
