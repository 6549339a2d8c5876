"""Every bad input gets a 4xx with a message that says what to fix; the server stays ready.

None of this reaches the model, so the server runs the scripted engine (tests/fakes.py),
once, instead of a real model per engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import serve
from tests.fakes import ScriptedEngine

GOOD_MESSAGES = [{"role": "user", "content": "hi"}]
NATIVE_CASES: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"messages": [', 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 400, "valid dictionary"),
    ("missing messages", {"max_new_tokens": 4}, 400, "messages: Field required"),
    ("empty messages", {"messages": []}, 400, "at least one message"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ("non-string content", {"messages": [{"role": "user", "content": 42}]}, 400, "messages.0.content"),
    ("null content", {"messages": [{"role": "user", "content": None}]}, 400, "messages.0.content"),
    ("max_new_tokens 0", {"messages": GOOD_MESSAGES, "max_new_tokens": 0}, 400, "max_new_tokens"),
    ("max_new_tokens over limit", {"messages": GOOD_MESSAGES, "max_new_tokens": 10**6}, 400, "limit of 4096"),
    ("NaN temperature", b'{"messages": "hi", "temperature": NaN}', 400, "temperature"),
    ("infinite top_p", b'{"messages": "hi", "top_p": Infinity}', 400, "top_p"),
    ("temperature too high", {"messages": GOOD_MESSAGES, "temperature": 3}, 400, "temperature"),
    ("negative temperature", {"messages": GOOD_MESSAGES, "temperature": -0.1}, 400, "temperature"),
    ("top_p zero", {"messages": GOOD_MESSAGES, "top_p": 0}, 400, "top_p"),
    ("top_p above one", {"messages": GOOD_MESSAGES, "top_p": 1.01}, 400, "top_p"),
    ("negative seed", {"messages": GOOD_MESSAGES, "seed": -1}, 400, "seed"),
    ("too many stop strings", {"messages": GOOD_MESSAGES, "stop": ["a"] * 9}, 400, "stop"),
    ("empty stop string", {"messages": GOOD_MESSAGES, "stop": ""}, 400, "stop"),
    ("unknown field", {"messages": GOOD_MESSAGES, "max_tokens": 4}, 400, "max_tokens"),
    # Numbers are JSON numbers, integers where integers are meant: no strings, no booleans.
    (
        "temperature a string",
        {"messages": GOOD_MESSAGES, "temperature": "1"},
        400,
        "temperature: Input should be a valid number",
    ),
    (
        "max_new_tokens a string",
        {"messages": GOOD_MESSAGES, "max_new_tokens": "5"},
        400,
        "max_new_tokens: Input should be a valid integer",
    ),
    (
        "max_new_tokens true",
        {"messages": GOOD_MESSAGES, "max_new_tokens": True},
        400,
        "max_new_tokens: Input should be a valid integer",
    ),
    (
        "max_new_tokens 1e30",
        b'{"messages": "hi", "max_new_tokens": 1e30}',
        400,
        "max_new_tokens: Input should be a valid integer",
    ),
    ("seed a string", {"messages": GOOD_MESSAGES, "seed": "7"}, 400, "seed: Input should be a valid integer"),
    (
        "ignore_eos a string",
        {"messages": GOOD_MESSAGES, "ignore_eos": "true"},
        400,
        "ignore_eos: Input should be a valid boolean",
    ),
    (
        "prompt longer than the context",
        {"messages": [{"role": "user", "content": "word " * 3000}], "max_new_tokens": 16},
        400,
        "context is 2048 tokens",
    ),
]
OPENAI_CASES: list[tuple[str, Any, int, str]] = [
    ("n above one", {"messages": GOOD_MESSAGES, "n": 2}, 400, "n"),
    # Found by schemathesis: 2**63 overflowed the engines' int64 tensors (a 500).
    ("top_k past int32", {"messages": GOOD_MESSAGES, "top_k": 2**63}, 400, "top_k"),
    ("min_tokens past int32", {"messages": GOOD_MESSAGES, "min_tokens": 2**31}, 400, "min_tokens"),
    (
        "max_tokens a string",
        {"messages": GOOD_MESSAGES, "max_tokens": "5"},
        400,
        "max_tokens: Input should be a valid integer",
    ),
    (
        "top_p a string",
        {"messages": GOOD_MESSAGES, "top_p": "0.5"},
        400,
        "top_p: Input should be a valid number",
    ),
    (
        "stream a number",
        {"messages": GOOD_MESSAGES, "stream": 1},
        400,
        "stream: Input should be a valid boolean",
    ),
    ("max_tokens over limit", {"messages": GOOD_MESSAGES, "max_tokens": 10**6}, 400, "max_tokens"),
    (
        "content parts of the wrong type",
        {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
        400,
        "messages.0.content",
    ),
    # OpenAI fields this server cannot honour are refused by name, never silently ignored.
    (
        "tool_choice required without tools",
        {"messages": GOOD_MESSAGES, "tool_choice": "required"},
        400,
        "needs tools",
    ),
    (
        "tool_choice naming another tool",
        {
            "messages": GOOD_MESSAGES,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
        },
        400,
        "'g', which is not among the tools ['f']",
    ),
    (
        "a tool call and a JSON response_format",
        {
            "messages": GOOD_MESSAGES,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required",
            "response_format": {"type": "json_object"},
        },
        400,
        "cannot both shape the answer",
    ),
    (
        "a tool name with spaces",
        {
            "messages": GOOD_MESSAGES,
            "tools": [{"type": "function", "function": {"name": "a b"}}],
            "tool_choice": "none",
        },
        400,
        "tools.0.function.name",
    ),
    (
        "a JSON answer with ignore_eos",
        {"messages": GOOD_MESSAGES, "response_format": {"type": "json_object"}, "ignore_eos": True},
        400,
        "ignore_eos and min_tokens cannot be combined",
    ),
    ("functions (legacy tools)", {"messages": GOOD_MESSAGES, "functions": [{"name": "f"}]}, 400, "functions"),
    (
        "top_logprobs without logprobs",
        {"messages": GOOD_MESSAGES, "top_logprobs": 3},
        400,
        "needs logprobs: true",
    ),
    (
        "top_logprobs over 20",
        {"messages": GOOD_MESSAGES, "logprobs": True, "top_logprobs": 21},
        400,
        "top_logprobs",
    ),
    ("logprobs not a boolean", {"messages": GOOD_MESSAGES, "logprobs": "yes"}, 400, "logprobs"),
    (
        "response_format of another type",
        {"messages": GOOD_MESSAGES, "response_format": {"type": "xml"}},
        400,
        "response_format.type",
    ),
    (
        "response_format json_schema without one",
        {"messages": GOOD_MESSAGES, "response_format": {"type": "json_schema"}},
        400,
        "needs a json_schema",
    ),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    (
        "an image part",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400,
        "images are not supported",
    ),
    (
        "a tool call without a function",
        {
            "messages": [
                {"role": "assistant", "content": None, "tool_calls": [{}]},
                {"role": "user", "content": "hi"},
            ]
        },
        400,
        "tool_calls.0.function",
    ),
    (
        "tool calls on a tool message",
        {"messages": [{"role": "tool", "content": "", "tool_calls": [{"function": {"name": "f"}}]}]},
        400,
        "belong on an assistant message",
    ),
    (
        "null content without tool calls",
        {"messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "hi"}]},
        400,
        "content may be null only",
    ),
]


COMPLETION_CASES: list[tuple[str, Any, int, str]] = [
    ("missing prompt", {"max_tokens": 4}, 400, "prompt: Field required"),
    ("two prompts", {"prompt": ["a", "b"]}, 400, "exactly one prompt"),
    ("logprobs over 20", {"prompt": "a", "logprobs": 21}, 400, "logprobs"),
    ("negative logprobs", {"prompt": "a", "logprobs": -1}, 400, "logprobs"),
    ("echo with logprobs", {"prompt": "a", "echo": True, "logprobs": 1}, 400, "echo with logprobs"),
    ("suffix", {"prompt": "a", "suffix": "b"}, 400, "suffix"),
    ("best_of", {"prompt": "a", "best_of": 3}, 400, "best_of"),
    ("max_tokens a string", {"prompt": "a", "max_tokens": "4"}, 400, "max_tokens"),
    ("a penalty", {"prompt": "a", "presence_penalty": 1}, 400, "presence_penalty"),
    ("empty prompt", {"prompt": ""}, 400, "the prompt is empty"),
]


@pytest.fixture(scope="module")
def scripted_server_url() -> Iterator[str]:
    settings = Settings(model="scripted")
    with serve(create_app(settings, ScriptedEngine())) as url:
        yield url


@pytest.fixture
def client(scripted_server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scripted_server_url, timeout=60) as http:
        yield http


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), NATIVE_CASES, ids=[c[0] for c in NATIVE_CASES]
)
def test_native_endpoint_rejects(
    client: httpx.Client, case: str, body: Any, status: int, message: str
) -> None:
    assert_rejected(client, "/v1/chat", body, status, message)


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), OPENAI_CASES, ids=[c[0] for c in OPENAI_CASES]
)
def test_openai_endpoint_rejects(
    client: httpx.Client, case: str, body: Any, status: int, message: str
) -> None:
    assert_rejected(client, "/v1/chat/completions", body, status, message)


def test_oversized_body_is_413() -> None:
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    settings = Settings(model="scripted", max_body_bytes=4096)
    with serve(create_app(settings, ScriptedEngine())) as url, httpx.Client(base_url=url) as http:
        assert_rejected(http, "/v1/chat", big, 413, "larger than 4096 bytes")

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit counts the bytes
            yield b'{"messages": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        response = http.post("/v1/chat", content=chunked(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
        assert http.get("/ready").status_code == 200


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), COMPLETION_CASES, ids=[c[0] for c in COMPLETION_CASES]
)
def test_completions_endpoint_rejects(
    client: httpx.Client, case: str, body: Any, status: int, message: str
) -> None:
    assert_rejected(client, "/v1/completions", body, status, message)


@pytest.mark.parametrize("path", ["/v1/chat", "/v1/chat/completions"])
def test_a_body_that_is_not_sent_as_json_is_told_so(client: httpx.Client, path: str) -> None:
    response = client.post(path, content=b'{"messages": "hi"}', headers={"Content-Type": "text/plain"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_content_type"
    assert "Content-Type: application/json" in error["message"]


def test_unknown_route_and_method_use_the_error_body(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing-here")
    wrong_method = client.get("/v1/chat")

    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()["error"]) == {"message", "type", "param", "code", "request_id"}


def assert_rejected(http: httpx.Client, path: str, body: Any, status: int, message: str) -> None:
    if isinstance(body, bytes):
        response = http.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = http.post(path, json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert message in error["message"], error
    assert error["type"] == "invalid_request_error"
    assert http.get("/ready").status_code == 200
