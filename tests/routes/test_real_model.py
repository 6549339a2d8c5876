"""Both endpoints on the built-in real model (smollm2-135m), over real HTTP, on both engines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import serve, stream_chat

PARIS = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "The capital of France is Paris."


@pytest.fixture
def sdk(real_server_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{real_server_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def http(real_server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_server_url, timeout=60) as client:
        yield client


def test_the_native_endpoint_answers_in_english(http: httpx.Client) -> None:
    stream = stream_chat(http, {"messages": PARIS, "temperature": 0})

    assert stream.text == ANSWER
    assert stream.done is not None
    assert stream.done["finish_reason"] == "stop"


def test_the_openai_endpoint_answers_the_same_streaming_or_not(sdk: openai.OpenAI) -> None:
    whole = sdk.chat.completions.create(model="smollm2-135m", messages=PARIS, temperature=0)  # type: ignore[arg-type]
    chunks = sdk.chat.completions.create(model="smollm2-135m", messages=PARIS, temperature=0, stream=True)  # type: ignore[arg-type]

    assert whole.choices[0].message.content == ANSWER
    assert whole.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER


def test_models_names_the_built_in_model(sdk: openai.OpenAI) -> None:
    assert [model.id for model in sdk.models.list().data] == ["smollm2-135m"]


def test_another_model_name_is_404_naming_the_served_one(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-4o", messages=PARIS)  # type: ignore[arg-type]

    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "smollm2-135m" in error["message"]


def test_a_stop_string_ends_real_text_before_it(http: httpx.Client) -> None:
    stream = stream_chat(http, {"messages": PARIS, "temperature": 0, "stop": [" Paris"]})

    assert stream.text == "The capital of France is"
    assert stream.done is not None
    assert stream.done["finish_reason"] == "stop"


def test_a_conversation_ending_with_the_assistant_continues_its_message(sdk: openai.OpenAI) -> None:
    prefilled = [*PARIS, {"role": "assistant", "content": "The capital of France is"}]

    completion = sdk.chat.completions.create(model="smollm2-135m", messages=prefilled, temperature=0)  # type: ignore[arg-type]

    assert completion.choices[0].message.content == " Paris."


@pytest.mark.parametrize(
    ("messages", "options"),
    [
        (PARIS, {"continue_final_message": True}),
        (
            [*PARIS, {"role": "assistant", "content": "The"}],
            {"continue_final_message": True, "add_generation_prompt": True},
        ),
    ],
    ids=["nothing-to-continue", "both"],
)
def test_template_options_that_cannot_work_are_400(
    http: httpx.Client, messages: list[dict[str, str]], options: dict[str, bool]
) -> None:
    for path in ("/v1/chat", "/v1/chat/completions"):
        response = http.post(path, json={"messages": messages, **options})

        assert response.status_code == 400
        assert response.json()["error"]["param"] == "continue_final_message"


@pytest.fixture
def short_context_url(make_real_settings: Callable[..., Settings]) -> Iterator[str]:
    with serve(create_app(make_real_settings(max_model_len=64))) as url:
        yield url


def test_no_max_tokens_means_what_the_context_leaves(short_context_url: str) -> None:
    payload: dict[str, Any] = {"messages": PARIS, "ignore_eos": True}  # the server's default is 512
    with httpx.Client(base_url=short_context_url, timeout=60) as client:
        stream = stream_chat(client, payload)
        asked = client.post("/v1/chat/completions", json={**payload, "max_tokens": 64})

    assert stream.done is not None
    usage = stream.done["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] == 64
    assert stream.done["finish_reason"] == "length"
    # Asked for more than fits, the client hears which of its fields to lower.
    assert asked.status_code == 400
    assert asked.json()["error"]["code"] == "context_length_exceeded"
    assert "lower max_tokens" in asked.json()["error"]["message"]


def test_text_parts_and_an_agents_history_are_rendered(sdk: openai.OpenAI) -> None:
    history: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the capital"},
                {"type": "text", "text": " of France?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {"name": "capital", "arguments": '{"country": "France"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call-1", "content": "Paris"},
    ]

    completion = sdk.chat.completions.create(
        model="smollm2-135m", messages=history, temperature=0, max_tokens=12
    )

    assert completion.choices[
        0
    ].message.content  # was a 400 for the parts, the null content and the tool role


def test_vllms_sampling_fields_reach_the_engine_through_the_sdk(sdk: openai.OpenAI) -> None:
    hot: dict[str, Any] = {"model": "smollm2-135m", "messages": PARIS, "temperature": 1.5, "seed": 3}

    top_k_1 = sdk.chat.completions.create(**hot, extra_body={"top_k": 1})
    at_least = sdk.chat.completions.create(
        **{**hot, "temperature": 0}, max_tokens=24, extra_body={"min_tokens": 20}
    )
    no_penalty = sdk.chat.completions.create(
        **{**hot, "temperature": 0}, frequency_penalty=0, presence_penalty=0
    )

    assert top_k_1.choices[0].message.content == ANSWER
    assert at_least.usage is not None
    assert at_least.usage.completion_tokens >= 20
    assert no_penalty.choices[0].message.content == ANSWER  # OpenAI's defaults are accepted


def test_text_completion_continues_the_prompt_streaming_or_not(sdk: openai.OpenAI) -> None:
    # No chat template: the model continues the text as it is (llama-index OpenAILike, litellm
    # text_completion, lm-eval's local-completions call this endpoint).
    kwargs: dict[str, Any] = {
        "model": "smollm2-135m",
        "prompt": "The capital of France is",
        "temperature": 0,
        "max_tokens": 8,
        "stop": ["\n"],  # the model goes on with ".\n\nThe answer is:"
    }

    whole = sdk.completions.create(**kwargs)
    streamed = list(sdk.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    echoed = sdk.completions.create(**{**kwargs, "prompt": ["The capital of France is"]}, echo=True)

    assert whole.object == "text_completion"
    assert whole.choices[0].text == " Paris."
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == 5  # no template around it
    assert whole.usage.completion_tokens >= 2  # the stop string can stop the model a step later
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == " Paris."
    assert streamed[-1].usage is not None
    assert streamed[-1].usage.completion_tokens >= 2
    assert echoed.choices[0].text == "The capital of France is Paris."


def test_chat_logprobs_through_the_sdk_streaming_or_not(sdk: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": "smollm2-135m", "messages": PARIS, "temperature": 0}

    whole = sdk.chat.completions.create(**kwargs, logprobs=True, top_logprobs=3)
    chunks = list(sdk.chat.completions.create(**kwargs, logprobs=True, top_logprobs=3, stream=True))

    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    tokens = logprobs.content
    assert "".join(token.token for token in tokens) == whole.choices[0].message.content == ANSWER
    assert tokens[-1].token == ""  # the EOS that ended it adds no text; its own name is among the top
    assert tokens[-1].top_logprobs[0].token == "<|im_end|>"
    for token in tokens:
        assert token.logprob == token.top_logprobs[0].logprob <= 0  # greedy: the most likely
        assert len(token.top_logprobs) == 3
        assert token.bytes == list(token.token.encode())
    pieces = [chunk.choices[0].logprobs for chunk in chunks if chunk.choices and chunk.choices[0].logprobs]
    streamed = [token for piece in pieces for token in piece.content or []]
    assert [token.token for token in streamed] == [token.token for token in tokens]
    assert [token.logprob for token in streamed] == pytest.approx(
        [token.logprob for token in tokens], abs=1e-4
    )


def test_logprobs_are_those_of_the_distribution_sampled_from(sdk: openai.OpenAI) -> None:
    # top_k=1 leaves one token to sample at any temperature: its log-probability is 0, the rest masked out.
    completion = sdk.chat.completions.create(
        model="smollm2-135m",
        messages=PARIS,
        temperature=1.5,
        seed=3,
        logprobs=True,
        top_logprobs=2,
        extra_body={"top_k": 1},
    )

    content = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content
    assert all(token.logprob == 0 for token in content)
    assert all(token.top_logprobs[1].logprob == -9999.0 for token in content)  # vLLM's value for -inf


def test_text_completion_logprobs_are_the_legacy_lists(sdk: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": "smollm2-135m", "prompt": "The capital of France is", "temperature": 0}

    whole = sdk.completions.create(**kwargs, max_tokens=4, logprobs=2)
    streamed = list(sdk.completions.create(**kwargs, max_tokens=4, logprobs=2, stream=True))

    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens is not None
    assert logprobs.token_logprobs is not None
    assert logprobs.top_logprobs is not None
    assert "".join(logprobs.tokens) == whole.choices[0].text
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
    assert logprobs.text_offset == [sum(len(token) for token in logprobs.tokens[:i]) for i in range(4)]
    for token, logprob, top in zip(
        logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True
    ):
        assert top[token] == logprob == max(top.values())  # greedy: the sampled token is the most likely
        assert len(top) == 2
    pieces = [chunk.choices[0].logprobs for chunk in streamed if chunk.choices[0].logprobs]
    streamed_tokens = [token for piece in pieces for token in piece.tokens or []]
    streamed_offsets = [offset for piece in pieces for offset in piece.text_offset or []]
    assert streamed_tokens == logprobs.tokens
    assert streamed_offsets == logprobs.text_offset
