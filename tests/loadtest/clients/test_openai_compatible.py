"""The OpenAI-compatible client: role-only first chunks, usage chunks, [DONE], errors.

Tolerance as in test_native: events are never early, and may be 30 ms late on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loadtest.clients import OpenAIClient
from loadtest.driver.runner import send_one
from loadtest.measure.metrics import RequestRecord, build_record
from tests.loadtest.scripted_server import Script, ScriptedServer, scripted_server

LATE_TOLERANCE_S = 0.030


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "model": "m", **extra}
    if "choices" not in extra:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]
    return f"data: {json.dumps(body)}\n\n".encode()


def usage_chunk(completion_tokens: int) -> bytes:
    usage = {
        "prompt_tokens": 4,
        "completion_tokens": completion_tokens,
        "total_tokens": 4 + completion_tokens,
    }
    return chunk(choices=[], usage=usage)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def measure(server: ScriptedServer, script: Script) -> RequestRecord:
    server.scripts["/v1/chat/completions"] = script
    client = OpenAIClient(f"{server.url}", max_tokens=8, model="m")

    async def send() -> RequestRecord:
        async with httpx.AsyncClient() as http:
            return build_record(0, 0, "steady", await send_one(client, http, "hi", 10.0))

    return asyncio.run(send())


def test_a_role_only_first_chunk_is_not_the_first_token(server: ScriptedServer) -> None:
    script = Script(
        steps=[
            (0.050, chunk({"role": "assistant", "content": ""})),
            (0.250, chunk({"content": "Hello"})),
            (0.050, chunk({"content": " world"})),
            (0.0, chunk({}, finish_reason="length") + usage_chunk(2) + b"data: [DONE]\n\n"),
        ]
    )

    record = measure(server, script)

    assert record.ok
    assert record.time_to_first_byte_s < 0.300
    assert 0.300 <= record.ttft_s <= 0.300 + LATE_TOLERANCE_S
    assert record.output_tokens == 2
    assert record.content_chunks == 2
    assert record.finish_reason == "length"


def test_without_usage_the_token_count_is_the_chunk_count_and_says_so(server: ScriptedServer) -> None:
    script = Script(steps=[(0.0, chunk({"content": "a"}) + chunk({"content": "b"}) + b"data: [DONE]\n\n")])

    record = measure(server, script)

    assert record.output_tokens == 2
    assert record.output_tokens_source == "chunks"
    assert record.usage_completion_tokens is None
    assert not record.token_count_mismatch


def test_an_error_in_a_data_chunk_fails_the_request(server: ScriptedServer) -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    script = Script(steps=[(0.0, chunk({"content": "a"})), (0.0, error)])

    record = measure(server, script)

    assert record.error == "overloaded"
    assert record.error_type == "stream_error"


def test_the_request_streams_with_usage_and_fixed_length(server: ScriptedServer) -> None:
    measure(server, Script(steps=[(0.0, b"data: [DONE]\n\n")]))

    body = server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 8
    assert body["ignore_eos"] is True
    assert body["model"] == "m"


def test_extra_body_fields_are_sent_and_override_the_defaults(server: ScriptedServer) -> None:
    server.scripts["/v1/chat/completions"] = Script(steps=[(0.0, b"data: [DONE]\n\n")])
    length = '{"max_new_tokens": 8, "min_new_tokens": 8}'
    client = OpenAIClient(
        server.url, max_tokens=8, ignore_eos=False, extra_body={"generation_config": length}
    )

    async def send() -> None:
        async with httpx.AsyncClient() as http:
            await send_one(client, http, "hi", 10.0)

    asyncio.run(send())

    body = server.requests[0].body
    assert body["generation_config"] == length
    assert "ignore_eos" not in body


def test_with_ends_at_usage_a_stream_without_done_is_complete(server: ScriptedServer) -> None:
    # transformers serve: the last chunk carries finish_reason and usage, and no [DONE] follows.
    last = chunk({}, finish_reason="length", usage={"prompt_tokens": 4, "completion_tokens": 2})
    server.scripts["/v1/chat/completions"] = Script(
        steps=[(0.0, chunk({"content": "a"})), (0.05, chunk({"content": "b"})), (0.0, last)]
    )
    client = OpenAIClient(server.url, max_tokens=2, ends_at_usage=True)

    async def send() -> RequestRecord:
        async with httpx.AsyncClient() as http:
            return build_record(0, 0, "steady", await send_one(client, http, "hi", 10.0))

    record = asyncio.run(send())

    assert record.ok
    assert record.output_tokens == 2
    assert record.e2e_s is not None
    assert record.e2e_s >= record.ttft_s


def test_without_ends_at_usage_a_stream_without_done_is_incomplete(server: ScriptedServer) -> None:
    last = chunk({}, finish_reason="length", usage={"prompt_tokens": 4, "completion_tokens": 1})
    record = measure(server, Script(steps=[(0.0, chunk({"content": "a"}) + last)]))

    assert record.error_type == "incomplete_stream"
