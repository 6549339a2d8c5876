"""The official openai SDK, unmodified, against /v1/chat/completions and /v1/models."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import stream_chat

MESSAGES = [{"role": "user", "content": "Write a function that sorts a list."}]


@pytest.fixture
def sdk(server_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_models_lists_the_served_model(sdk: openai.OpenAI) -> None:
    models = sdk.models.list()

    assert [m.id for m in models.data] == ["tiny-random"]


def test_non_streaming_completion(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="tiny-random", messages=MESSAGES, max_tokens=12, seed=4, extra_body={"ignore_eos": True}
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 12
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 12


def test_streaming_with_usage_gives_the_same_text(sdk: openai.OpenAI) -> None:
    kwargs = {"model": "tiny-random", "messages": MESSAGES, "max_tokens": 24, "seed": 9}
    whole = sdk.chat.completions.create(**kwargs)

    chunks = list(sdk.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1
    text = "".join(c.choices[0].delta.content for c in content_chunks)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


def test_streaming_without_usage_sends_no_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(model="tiny-random", messages=MESSAGES, max_tokens=5, stream=True)
    )

    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_stream_ends_with_done_marker(server_url: str) -> None:
    body = {"messages": MESSAGES, "max_tokens": 3, "stream": True}
    with httpx.Client(base_url=server_url) as http:
        lines = [line for line in http.post("/v1/chat/completions", json=body).text.splitlines() if line]

    assert lines[-1] == "data: [DONE]"


def test_native_and_openai_endpoints_generate_the_same_text(sdk: openai.OpenAI, client: httpx.Client) -> None:
    completion = sdk.chat.completions.create(
        model="tiny-random", messages=MESSAGES, max_tokens=20, seed=2, temperature=0.8, top_p=0.9
    )
    native = stream_chat(
        client, {"messages": MESSAGES, "max_new_tokens": 20, "seed": 2, "temperature": 0.8, "top_p": 0.9}
    )

    assert native.text == completion.choices[0].message.content


def test_bad_request_raises_the_sdks_bad_request_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="tiny-random", messages=[], max_tokens=5)

    assert raised.value.body["param"] == "messages"


def test_developer_role_is_taken_as_system(sdk: openai.OpenAI) -> None:
    def complete(role: str) -> str | None:
        completion = sdk.chat.completions.create(
            model="tiny-random",
            messages=[{"role": role, "content": "Answer briefly."}, *MESSAGES],  # type: ignore[misc]
            max_tokens=8,
            seed=5,
        )
        return completion.choices[0].message.content

    assert complete("developer") == complete("system")


def test_fields_that_ask_for_nothing_special_are_accepted(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="tiny-random",
        messages=MESSAGES,
        max_tokens=4,
        logprobs=False,
        tool_choice="none",
        response_format={"type": "text"},
    )

    assert completion.choices[0].message.content is not None


def test_continuous_usage_stats_puts_usage_on_every_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="tiny-random",
            messages=MESSAGES,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
            extra_body={"ignore_eos": True},
        )
    )

    assert all(c.usage is not None for c in chunks)
    completion_tokens = [c.usage.completion_tokens for c in chunks if c.usage]
    assert completion_tokens == sorted(completion_tokens)
    assert completion_tokens[-1] == 16
    prompt_tokens = {c.usage.prompt_tokens for c in chunks if c.usage}
    assert len(prompt_tokens) == 1
    usages = [c.usage for c in chunks if c.usage]
    assert all(u.total_tokens == u.prompt_tokens + u.completion_tokens for u in usages)
