"""The one SSE writer both streaming endpoints use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from service.errors import APIError
from service.generation import ChatGeneration

# Documents the streamed responses in /openapi.json.
SSE_RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "A stream of server-sent events.", "content": {"text/event-stream": {}}}
}


class GenerationStream(EventSourceResponse):
    """An SSE response that always closes its generation: on completion, disconnect or error.

    Closing here, not only in the event generator, matters when the client leaves
    before the first event: the generator never starts, so its own cleanup never runs.
    """

    def __init__(
        self, events: AsyncIterator[dict[str, str]], generation: ChatGeneration, ping_interval_s: float
    ) -> None:
        # "\n" separators: the most widely parsed form, and what curl shows plainly.
        # The headers go out at once, before the request has a generation slot; while it
        # waits, ": ping" comments keep proxies from timing the connection out. (Beam's
        # gateway waits 30 s for a container's response headers: responseHeaderTimeout in
        # beam-cloud/beta9 pkg/abstractions/endpoint/buffer.go.)
        super().__init__(events, sep="\n", ping=ping_interval_s)
        self._generation = generation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._generation.close()


def json_data(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def error_event(exc: APIError) -> dict[str, str]:
    """An error after the 200 went out: the status cannot change, so it is an event."""
    return {"event": "error", "data": json_data(exc.body())}
