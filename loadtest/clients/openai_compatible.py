"""Any OpenAI-compatible server: ``POST /v1/chat/completions`` with ``stream: true``.

The first chunk of OpenAI's stream carries only the role (empty content); it and
any other chunk without content text are not tokens. Usage comes from the last
chunk, asked for with ``stream_options.include_usage``.

Peers differ in two places, so both are options: how to ask for an exact length
(``ignore_eos``, or a server's own field through ``extra_body``), and how the stream
ends (``data: [DONE]``, or, with ``ends_at_usage``, the chunk that carries the usage:
``transformers serve`` sends no ``[DONE]`` and puts the usage in its last chunk).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtest.clients.base import (
    MalformedResponse,
    ProxyAnswers,
    StreamTrace,
    checked_finish_reason,
    error_from_event,
    json_object,
    stream_sse,
)
from loadtest.clients.sse import ServerSentEvent


@dataclass
class OpenAIClient:
    base_url: str
    max_tokens: int
    model: str | None = None
    ignore_eos: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    protocol: str = "openai"
    proxy_answers: ProxyAnswers = field(default_factory=dict)  # the provider's (clients/providers.py)
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into every request body
    ends_at_usage: bool = False  # the usage chunk is the final event (no [DONE] follows)

    def request_body(self, prompt: str, max_tokens: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens or self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.model:
            body["model"] = self.model
        if self.ignore_eos:
            # Not an OpenAI field: vLLM, SGLang and this service honour it; api.openai.com rejects it.
            body["ignore_eos"] = True
        return body | self.extra_body

    def at(self, url: str) -> OpenAIClient:
        return dataclasses.replace(self, base_url=url)

    async def send(
        self, http: httpx.AsyncClient, prompt: str, trace: StreamTrace, max_tokens: int | None = None
    ) -> None:
        def on_event(event: ServerSentEvent, arrival_s: float) -> bool:
            if event.data == "[DONE]":
                trace.end_s = arrival_s
                return True
            if event.event == "error":
                trace.fail(error_from_event(event.data), "stream_error")
                return True
            chunk = json_object(event.data, "a chunk")
            if "error" in chunk:
                trace.fail(error_from_event(event.data), "stream_error")
                return True
            for choice in _choices(chunk):
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if content is not None and not isinstance(content, str):
                    raise MalformedResponse(f"a chunk's delta.content is {content!r}")
                trace.add_content(content or "", arrival_s)
                if reason := checked_finish_reason(choice.get("finish_reason")):
                    trace.finish_reason = reason
            if chunk.get("usage") is not None:
                trace.set_usage(chunk["usage"])
                if self.ends_at_usage:
                    trace.end_s = arrival_s
                    return True
            return False

        url = f"{self.base_url}/v1/chat/completions"
        await stream_sse(
            http,
            url,
            self.request_body(prompt, max_tokens),
            self.headers,
            trace,
            on_event,
            self.proxy_answers,
        )


def _choices(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
        raise MalformedResponse(f"a chunk's choices are {choices!r}, not a list of objects")
    return choices


async def discover_model(http: httpx.AsyncClient, base_url: str, headers: dict[str, str]) -> str | None:
    """The first model ``GET /v1/models`` lists (OpenAI-compatible servers want a model name), or None."""
    try:
        response = await http.get(f"{base_url}/v1/models", headers=headers)
        models = response.json().get("data") or [] if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return None
    return models[0].get("id") if models else None
