"""Pure ASGI middleware: HEAD as GET, body size limit, request counting and request ids.

Pure ASGI (not BaseHTTPMiddleware) so that streamed responses pass through
untouched and a client disconnect still reaches the SSE response.
"""

from __future__ import annotations

import json
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import APIError, ErrorCode
from service.metrics import Metrics

# Endpoints counted by name; anything else is "other" (bounded label values).
COUNTED_PATHS = frozenset({"/v1/chat", "/v1/chat/completions", "/v1/completions", "/v1/models"})


class BodySizeLimit:
    """Answers 413 to a request body over ``max_bytes``, declared or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised while the app reads the body; its error handler answers 413.
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    async def _reject(self, send: Send) -> None:
        await self._too_large().to_response()({"type": "http"}, _no_receive, send)

    def _too_large(self) -> APIError:
        return ErrorCode.BODY_TOO_LARGE.error(f"request body is larger than {self.max_bytes} bytes")


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class RequestCounter:
    """Counts API requests by endpoint and status code."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        endpoint = path if path in COUNTED_PATHS else "other"

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(endpoint=endpoint, status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


class HeadAsGet:
    """Answers HEAD as GET without the body (RFC 9110 9.3.2).

    Probes (load balancers, aiperf) send HEAD to /health, /ready, /v1/models and
    /metrics; FastAPI routes declared GET answer HEAD 405 otherwise. The body is
    dropped here rather than trusting the ASGI server to, since providers run their own.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)


# A client's own id is echoed when it is a plain token of reasonable length; else one is made.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_HEADER = b"x-request-id"


class RequestId:
    """Gives every response an ``x-request-id``: the client's (if it sent a usable one) or a new one,
    also in ``scope["state"]["request_id"]`` for the handlers' logs, and in every JSON error body
    (``error.request_id``) whoever wrote it, a handler or a middleware further in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = sent if _CLIENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        held: Message | None = None  # an error response's start, sent once its body is rewritten
        body: list[bytes] = []

        async def send_with_id(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, request_id.encode())]}
                if message["status"] >= 400 and _is_json_response(headers):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                rewritten = _with_request_id(b"".join(body), request_id)
                headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(rewritten)).encode()))
                await send({**held, "headers": headers})
                message = {"type": "http.response.body", "body": rewritten}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _is_json_response(headers: list[tuple[bytes, bytes]]) -> bool:
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


def _with_request_id(body: bytes, request_id: str) -> bytes:
    """The error envelope with ``error.request_id`` added; any other body unchanged."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        return body
    parsed["error"]["request_id"] = request_id
    return json.dumps(parsed, separators=(",", ":")).encode()
