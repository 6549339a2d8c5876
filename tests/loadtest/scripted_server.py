"""A real HTTP server on 127.0.0.1 that writes scripted bytes at scripted times.

Written on raw asyncio streams so a test decides exactly which bytes go out in
which HTTP chunk and when: an event split across two reads, several events in one
read, CRLF line ends, a dropped connection (closed before the chunked body ends).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

REASONS = {200: "OK", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class Script:
    """What the server answers: a status, then each ``(delay_s, bytes)`` step as one HTTP chunk,
    ``delay_s`` after the step before it was due."""

    steps: list[tuple[float, bytes]] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    drop_connection: bool = False  # close without the chunked body's end: a dropped connection


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def text_event(text: str, newline: str = "\n") -> bytes:
    return f"data: {json.dumps({'text': text})}{newline}{newline}".encode()


def done_event(completion_tokens: int, instance_id: str = "inst-1", started_at: float = 0.0) -> bytes:
    done = {
        "finish_reason": "length",
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": completion_tokens,
            "total_tokens": 5 + completion_tokens,
        },
        "timings": {"queue_s": 0.0, "ttft_s": 0.3, "total_s": 0.8},
        "instance": {"id": instance_id, "started_at": started_at},
    }
    return f"event: done\ndata: {json.dumps(done)}\n\n".encode()


def timed_tokens(first_s: float, gap_s: float, count: int) -> list[tuple[float, bytes]]:
    """The first text event after ``first_s``, then one every ``gap_s``."""
    return [(first_s if index == 0 else gap_s, text_event(f" t{index}")) for index in range(count)]


class ScriptedServer:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.requests: list[ReceivedRequest] = []
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode().split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        raw_body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(
            ReceivedRequest(method, path, headers, json.loads(raw_body) if raw_body else None)
        )
        script = self.scripts.get(path, Script(status=500, steps=[(0, b"no script for this path")]))
        reason = REASONS.get(script.status, "Status")
        writer.write(
            f"HTTP/1.1 {script.status} {reason}\r\nContent-Type: {script.content_type}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        # Each step at its time from the start (delays add up): one late wake-up on a loaded
        # machine delays that step only, not every step after it.
        loop = asyncio.get_running_loop()
        due = loop.time()
        for delay_s, data in script.steps:
            due += delay_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        if not script.drop_connection:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        writer.close()


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    """Serve on a free port of 127.0.0.1 from a thread of its own; stop on exit."""
    scripted = ScriptedServer()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(scripted._handle, "127.0.0.1", 0)
        scripted.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started.set()
        async with server:
            await stop.wait()
        # Handlers still writing (a test that timed out on purpose) end with the server.
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the scripted server did not start")
    try:
        yield scripted
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
