"""The service's native endpoint, ``POST /v1/chat``: text events, then ``event: done``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import httpx

from loadtest.clients.base import (
    MalformedResponse,
    ProxyAnswers,
    StreamTrace,
    error_from_event,
    json_object,
    stream_sse,
)
from loadtest.clients.sse import ServerSentEvent


def native_request_body(prompt: str, max_tokens: int, ignore_eos: bool) -> dict[str, object]:
    """The /v1/chat body; the RunPod handler takes the same body as its ``input``."""
    return {
        "messages": [{"role": "user", "content": prompt}],
        "max_new_tokens": max_tokens,
        "ignore_eos": ignore_eos,
    }


@dataclass
class NativeClient:
    base_url: str
    max_tokens: int
    ignore_eos: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    protocol: str = "native"
    proxy_answers: ProxyAnswers = field(default_factory=dict)  # the provider's (clients/providers.py)

    def at(self, url: str) -> NativeClient:
        return dataclasses.replace(self, base_url=url)

    async def send(
        self, http: httpx.AsyncClient, prompt: str, trace: StreamTrace, max_tokens: int | None = None
    ) -> None:
        body = native_request_body(prompt, max_tokens or self.max_tokens, self.ignore_eos)

        def on_event(event: ServerSentEvent, arrival_s: float) -> bool:
            if event.event == "error":
                trace.fail(error_from_event(event.data), "stream_error")
                return True
            if event.event == "done":
                trace.apply_done(json_object(event.data, "the done event"), arrival_s)
                return True
            if event.event == "message":
                text = json_object(event.data, "a text event").get("text")
                if text is not None and not isinstance(text, str):
                    raise MalformedResponse(f"a text event's text is {text!r}")
                trace.add_content(text or "", arrival_s)
            return False  # other event types (pings) carry no output

        await stream_sse(
            http, f"{self.base_url}/v1/chat", body, self.headers, trace, on_event, self.proxy_answers
        )
