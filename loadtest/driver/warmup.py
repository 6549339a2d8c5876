"""Pay the client's own start-up before the clock starts, without touching the server.

The first request a fresh process sends runs code nothing has run yet: httpx imports
its transport (httpcore, h11, anyio) and builds its connection machinery, the SSE
parser and JSON decoder run for the first time. Measured against a scripted server
whose first token comes at 300 ms, that put 15-20 ms into request 0, the cold one,
and nowhere else. A health probe would pay it too, but would wake a scaled-to-zero
container: instead the same client sends one request to a canned server of its own on
127.0.0.1, and the result is thrown away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx

from loadtest.clients import ChatClient, StreamTrace

_TEXT = json.dumps({"text": "warm", "choices": [{"index": 0, "delta": {"content": "warm"}}]})
_DONE = json.dumps({"finish_reason": "length", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
# Every protocol's shapes at once: native text and done events, OpenAI chunks and [DONE].
_BODY = f"data: {_TEXT}\n\nevent: done\ndata: {_DONE}\n\ndata: [DONE]\n\n".encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        writer.write(_RESPONSE)
        await writer.drain()
    writer.close()


async def warm_up(client: ChatClient, prompt: str, timeout_s: float = 10.0) -> None:
    """Send one request with ``client``'s code to a canned server on loopback; nothing is recorded."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    canned = client.at(f"http://127.0.0.1:{port}")
    async with server, httpx.AsyncClient(timeout=timeout_s) as http:
        # Any outcome will do (the canned answer is not every protocol's whole exchange):
        # what matters is that the code ran.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await canned.send(http, prompt, StreamTrace())
