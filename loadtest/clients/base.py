"""What every client records about one request, and the streamed POST they share.

Times are seconds since the request was sent (``time.perf_counter``), taken when
the read that carried the bytes returned, so several events that arrive in one
read share one arrival time: that is what a client of the server saw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from loadtest.clients.sse import ServerSentEvent, SSEParser


class MalformedResponse(ValueError):
    """Valid JSON of the wrong shape: the request fails as ``malformed_response``, the run goes on."""


# OpenAI's finish reasons (and the legacy function_call); anything else is not a server's answer.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_COUNT_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def json_object(data: str, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object. Raises :class:`MalformedResponse` (also for invalid JSON)."""
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise MalformedResponse(f"{what} is not JSON: {data[:80]!r}") from exc
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what} is {type(value).__name__}, not an object: {data[:80]!r}")
    return value


def checked_usage(value: Any) -> dict[str, Any] | None:
    """A usage object whose counts are whole numbers >= 0, or None. Raises :class:`MalformedResponse`."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedResponse(f"usage is {type(value).__name__}, not an object")
    for name in _COUNT_FIELDS:
        count = value.get(name)
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
            raise MalformedResponse(f"usage.{name} is {count!r}, not a count")
    return value


def checked_finish_reason(value: Any) -> str | None:
    if value is None or value in FINISH_REASONS:
        return value
    raise MalformedResponse(f"finish_reason {value!r} is none of {', '.join(sorted(FINISH_REASONS))}")


def _optional(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise MalformedResponse(f"{what} is {value!r}")
    return value


@dataclass
class StreamTrace:
    """Raw observations of one request; metrics.py derives the numbers from it.

    Times count from when the request was due (``due``, a ``time.perf_counter``
    reading: its scheduled send time with ``--rate``), so a send delayed by the
    client itself shows in every latency; ``send_delay_s`` says by how much.
    """

    due: float | None = None
    started_at_unix: float = field(default_factory=time.time)
    _started_perf: float = field(default_factory=time.perf_counter, repr=False)
    send_delay_s: float = 0.0
    http_status: int | None = None
    first_byte_s: float | None = None
    content_arrivals_s: list[float] = field(default_factory=list)
    output_chars: int = 0
    output_bytes: int = 0  # UTF-8
    end_s: float | None = None
    usage: dict[str, Any] | None = None
    usage_reports: int = 0  # how many times the server sent a usage (once, for a sound count)
    max_tokens_asked: int | None = None
    finish_reason: str | None = None
    server_timings: dict[str, Any] | None = None
    instance_id: str | None = None
    instance_started_at: float | None = None
    polls: int | None = None
    error: str | None = None
    error_type: str | None = None

    def __post_init__(self) -> None:
        if self.due is not None and self.due < self._started_perf:
            self.send_delay_s = self._started_perf - self.due
            self.started_at_unix -= self.send_delay_s
            self._started_perf = self.due

    def elapsed_s(self) -> float:
        return time.perf_counter() - self._started_perf

    def add_content(self, text: str, arrival_s: float) -> None:
        """One piece of generated text; empty pieces are not content and are ignored."""
        if text:
            self.content_arrivals_s.append(arrival_s)
            self.output_chars += len(text)
            self.output_bytes += len(text.encode())

    def set_usage(self, usage: Any) -> None:
        """A usage the server reported. Raises :class:`MalformedResponse` for one of the wrong shape."""
        if (checked := checked_usage(usage)) is not None:
            self.usage = checked
            self.usage_reports += 1

    def apply_done(self, done: Any, arrival_s: float) -> None:
        """The native done event (also the last chunk of the RunPod handler).

        Raises :class:`MalformedResponse` when its fields are of the wrong shape.
        """
        if not isinstance(done, dict):
            raise MalformedResponse(f"the done event is {type(done).__name__}, not an object")
        self.set_usage(done.get("usage"))
        self.finish_reason = checked_finish_reason(done.get("finish_reason"))
        self.server_timings = _optional(done.get("timings"), dict, "timings")
        instance = _optional(done.get("instance"), dict, "instance") or {}
        self.instance_id = _optional(instance.get("id"), str, "instance.id")
        self.instance_started_at = _optional(instance.get("started_at"), (int, float), "instance.started_at")
        self.end_s = arrival_s

    def fail(self, message: str, error_type: str) -> None:
        # The first failure is the cause; later ones (a close after an error event) are effects.
        if self.error is None:
            self.error = message
            self.error_type = error_type
        if self.end_s is None:
            self.end_s = self.elapsed_s()


class ChatClient(Protocol):
    """One protocol (native SSE, OpenAI-compatible, RunPod queue): sends a prompt, fills a trace."""

    protocol: str

    async def send(
        self, http: httpx.AsyncClient, prompt: str, trace: StreamTrace, max_tokens: int | None = None
    ) -> None:
        """Send ``prompt`` for ``max_tokens`` tokens (None: the client's own) and fill ``trace``."""
        ...

    def at(self, url: str) -> ChatClient:
        """The same client aimed at another server (the warm-up's canned one)."""
        ...


# Answers a provider's proxy gives on its own, before or instead of the service's (a cold
# start, a request that outlived the proxy's limit): status -> (error type, meaning). Each
# provider names its proxy's (loadtest/clients/providers.py); from any other server they are plain errors.
ProxyAnswers = Mapping[int, tuple[str, str]]


def http_error(body: bytes, status_code: int, proxy_answers: ProxyAnswers | None = None) -> tuple[str, str]:
    """``(error_type, message)`` of a non-2xx answer.

    ``http_error`` when the service wrote it (its error body) or the status means nothing
    special; the provider's proxy answer (``proxy_answers``) when the body is not the service's.
    """
    message = error_from_body(body, status_code)
    if proxy_answers and status_code in proxy_answers and not _is_service_error(body):
        error_type, meaning = proxy_answers[status_code]
        return error_type, f"{message} ({meaning})"
    return "http_error", message


def _is_service_error(body: bytes) -> bool:
    payload = _json_or_none(body)
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict) and "type" in payload["error"]


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def error_from_body(body: bytes, status_code: int) -> str:
    """The message of the error body ``{"error": {"message": ...}}``, or the start of the text."""
    payload = _json_or_none(body)
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"HTTP {status_code}: {error['message']}"
        if isinstance(error, str):
            return f"HTTP {status_code}: {error}"
    text = body.decode("utf-8", errors="replace").strip()
    return f"HTTP {status_code}: {text[:200]}" if text else f"HTTP {status_code}"


def error_from_event(data: str) -> str:
    try:
        payload = json.loads(data)
        return str(payload["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return data[:200]


async def stream_sse(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    trace: StreamTrace,
    on_event: Callable[[ServerSentEvent, float], bool],
    proxy_answers: ProxyAnswers | None = None,
) -> None:
    """POST ``body`` and hand each event with its arrival time to ``on_event`` until it returns True.

    A non-200 status is recorded as :func:`http_error` types it; a stream that ends before
    ``on_event`` said it was complete as ``incomplete_stream``. Transport errors
    (dropped connections, timeouts) propagate to the caller, which records them.
    """
    request_headers = {"Accept": "text/event-stream", **headers}
    async with http.stream("POST", url, json=body, headers=request_headers) as response:
        trace.http_status = response.status_code
        if response.status_code != 200:
            error_type, message = http_error(await response.aread(), response.status_code, proxy_answers)
            trace.fail(message, error_type)
            return
        parser = SSEParser()
        async for chunk in response.aiter_bytes():
            arrival_s = trace.elapsed_s()
            if trace.first_byte_s is None:
                trace.first_byte_s = arrival_s
            for event in parser.feed(chunk):
                if on_event(event, arrival_s):
                    return
    trace.fail("the stream ended before its final event", "incomplete_stream")
