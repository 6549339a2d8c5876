"""The one SSE writer both streaming endpoints use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse

from service.errors import error_body

# Documents the streamed responses in /openapi.json.
SSE_RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "A stream of server-sent events.", "content": {"text/event-stream": {}}}
}


def sse_response(events: AsyncIterator[dict[str, str]]) -> EventSourceResponse:
    # "\n" separators: the most widely parsed form, and what curl shows plainly.
    return EventSourceResponse(events, sep="\n")


def json_data(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def generation_failed_event(exc: Exception) -> dict[str, str]:
    """An error after the 200 went out: the status cannot change, so it is an event."""
    body = error_body(str(exc), "server_error", code="generation_failed")
    return {"event": "error", "data": json_data(body)}
