"""A server that answers valid JSON of the wrong shape, or counts that contradict its stream.

The load tester must never crash, lose a run, or print a wrong number as if it were right:
each such answer is a labelled failed request (``malformed_response``), or a request whose
count is flagged and left out of every token-based number. The scripted server (a real
HTTP server on loopback) plays the hostile server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtest import cli
from loadtest.clients import NativeClient, OpenAIClient
from loadtest.driver.runner import send_one
from loadtest.measure.metrics import RequestRecord, build_record, summarize
from tests.loadtest.clients.test_openai_compatible import chunk, usage_chunk
from tests.loadtest.scripted_server import Script, ScriptedServer, done_event, scripted_server, text_event

MAX_TOKENS = 8


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def measure(server: ScriptedServer, path: str, steps: list[bytes]) -> RequestRecord:
    server.scripts[path] = Script(steps=[(0.0, step) for step in steps])
    if path == "/v1/chat":
        client: Any = NativeClient(server.url, max_tokens=MAX_TOKENS)
    else:
        client = OpenAIClient(server.url, max_tokens=MAX_TOKENS, model="m")

    async def send() -> RequestRecord:
        async with httpx.AsyncClient() as http:
            return build_record(0, 0, "steady", await send_one(client, http, "hi", 10.0))

    return asyncio.run(send())


def native_done(**changes: Any) -> bytes:
    done = json.loads(done_event(2).decode().split("data: ", 1)[1])
    done.update(changes)
    return f"event: done\ndata: {json.dumps(done)}\n\n".encode()


def usage_of(completion_tokens: Any) -> bytes:
    return chunk(choices=[], usage={"prompt_tokens": 4, "completion_tokens": completion_tokens})


WRONG_SHAPES = {
    "native text event a list": ("/v1/chat", [b"data: [1,2,3]\n\n", done_event(1)]),
    "native done event a string": ("/v1/chat", [text_event("a"), b'event: done\ndata: "done"\n\n']),
    "native instance a string": ("/v1/chat", [text_event("a"), native_done(instance="i-1")]),
    "native completion_tokens negative": (
        "/v1/chat",
        [text_event("a"), native_done(usage={"prompt_tokens": 5, "completion_tokens": -5})],
    ),
    "openai chunk a list": ("/v1/chat/completions", [b"data: [1, 2]\n\n", b"data: [DONE]\n\n"]),
    "openai usage a list": (
        "/v1/chat/completions",
        [chunk({"content": "a"}), chunk(choices=[], usage=[5]), b"data: [DONE]\n\n"],
    ),
    "openai completion_tokens a string": (
        "/v1/chat/completions",
        [chunk({"content": "a"}), usage_of("5"), b"data: [DONE]\n\n"],
    ),
    "openai finish_reason banana": (
        "/v1/chat/completions",
        [chunk({"content": "a"}), chunk({}, finish_reason="banana"), usage_chunk(1), b"data: [DONE]\n\n"],
    ),
}


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_an_answer_of_the_wrong_shape_is_a_labelled_failure(server: ScriptedServer, case: str) -> None:
    path, steps = WRONG_SHAPES[case]

    record = measure(server, path, steps)

    assert not record.ok
    assert record.error_type == "malformed_response"
    assert record.tokens_per_s is None


CONTRADICTIONS = {
    "a second usage chunk": (
        [chunk({"content": "hello"}), usage_chunk(1), usage_chunk(7_000_000), b"data: [DONE]\n\n"],
        "usage sent 2 times",
    ),
    "more tokens than asked for": (
        [chunk({"content": f"word{i} "}) for i in range(5)] + [usage_chunk(1000), b"data: [DONE]\n\n"],
        "1000 tokens claimed, 8 asked for",
    ),
    "fewer tokens than text events": (
        [chunk({"content": f"word{i} "}) for i in range(5)] + [usage_chunk(2), b"data: [DONE]\n\n"],
        "2 tokens claimed for 5 text events",
    ),
}


@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_a_count_that_contradicts_the_stream_is_flagged_and_not_counted(
    server: ScriptedServer, case: str
) -> None:
    steps, problem = CONTRADICTIONS[case]
    honest = measure(
        server, "/v1/chat/completions", [chunk({"content": "a b"}), usage_chunk(3), b"data: [DONE]\n\n"]
    )

    record = measure(server, "/v1/chat/completions", steps)
    summary = summarize([honest, record], wall_s=1.0)

    assert record.ok  # the request itself succeeded...
    assert record.count_problem == problem  # ...but its count cannot be right
    assert record.tokens_per_s is None
    assert summary["count_problems"] == 1
    assert summary["output_tokens"] == 3  # the honest request's only
    assert summary["groups"]["all"]["metrics"]["output_tokens"]["max"] == 3


def test_a_far_larger_count_than_the_text_is_flagged_even_within_max_tokens(server: ScriptedServer) -> None:
    steps = [chunk({"content": "ab"}), usage_of(500), b"data: [DONE]\n\n"]
    server.scripts["/v1/chat/completions"] = Script(steps=[(0.0, step) for step in steps])
    client = OpenAIClient(server.url, max_tokens=512, model="m")

    async def send() -> RequestRecord:
        async with httpx.AsyncClient() as http:
            return build_record(0, 0, "steady", await send_one(client, http, "hi", 10.0))

    record = asyncio.run(send())

    assert record.count_problem == "500 tokens claimed for 2 bytes of text"


def test_a_run_against_a_malformed_server_writes_its_results_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted_server() as server:
        server.scripts["/v1/chat"] = Script(steps=[(0.0, b"data: [1,2,3]\n\n")])

        status = cli.main(["--url", server.url, "--out", str(tmp_path), "--requests", "3", "--cold", "0"])

    results = json.loads((tmp_path / "results.json").read_text())
    assert status == 1  # every request failed
    assert results["summary"]["error_types"] == {"malformed_response": 3}
    assert "malformed_response 3" in capsys.readouterr().err


def test_a_run_prints_contradicting_counts_in_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted_server() as server:
        steps = [chunk({"content": "hello"}), usage_of(1000), b"data: [DONE]\n\n"]
        server.scripts["/v1/chat/completions"] = Script(steps=[(0.0, step) for step in steps])
        argv = ["--url", server.url, "--protocol", "openai", "--model", "m", "--out", str(tmp_path)]

        status = cli.main([*argv, "--requests", "2", "--cold", "0", "--max-tokens", "16"])

    results = json.loads((tmp_path / "results.json").read_text())
    assert status == 0
    assert results["summary"]["count_problems"] == 2
    assert results["summary"]["output_tokens"] == 0
    console = capsys.readouterr().err
    assert "contradicts the stream" in console
    assert "1000 tokens claimed, 16 asked for" in console
    assert "contradicts the stream" in (tmp_path / "report.md").read_text()
