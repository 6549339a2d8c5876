"""Structured output and tool calls through the official openai SDK, on the built-in real model.

Every answer is checked with jsonschema, a validator the grammar library has nothing to do with.
SmolLM2-135M left free repeats digits (population 1111...): the schemas bound their integers, as
a client that means a population would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

MODEL = "smollm2-135m"
PARIS = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


class City(BaseModel):
    city: str
    population: int = Field(ge=0, le=100_000_000)


class GetWeather(BaseModel):
    """The weather in a city now."""

    city: str


TOOLS: list[Any] = [
    openai.pydantic_function_tool(GetWeather, name="get_weather"),
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    },
]


@pytest.fixture
def sdk(real_server_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{real_server_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_the_sdks_parse_gets_an_instance_of_the_pydantic_model(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.parse(model=MODEL, messages=PARIS, response_format=City, temperature=0)  # type: ignore[arg-type]

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, City)
    assert parsed.city == "Paris"
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("max_tokens", [8, 13])
def test_json_cut_by_max_tokens_still_parses(sdk: openai.OpenAI, max_tokens: int) -> None:
    schema = City.model_json_schema()
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}

    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=PARIS,
        response_format=response_format,
        max_tokens=max_tokens,
        temperature=0.8,
        seed=2,  # type: ignore[arg-type]
    )

    content = completion.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), schema)
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= max_tokens


def test_a_streamed_json_object_is_json(sdk: openai.OpenAI) -> None:
    chunks = sdk.chat.completions.create(
        model=MODEL,
        messages=PARIS,
        response_format={"type": "json_object"},
        max_tokens=30,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
    )

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert isinstance(json.loads(text), dict)


def test_a_tool_call_round_trip(sdk: openai.OpenAI) -> None:
    called = sdk.chat.completions.create(
        model=MODEL, messages=WEATHER, tools=TOOLS, tool_choice="required", temperature=0
    )  # type: ignore[arg-type]

    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    history: list[Any] = [
        *WEATHER,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    answered = sdk.chat.completions.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", temperature=0
    )

    assert answered.choices[0].finish_reason == "stop"
    final = answered.choices[0].message.content or ""
    assert (
        "sunny" in final.lower()
    )  # the model read the tool's result: "...is sunny, ... 21 degrees Celsius."
    assert "21" in final


def test_auto_lets_the_model_answer_in_text(sdk: openai.OpenAI) -> None:
    # SmolLM2-135M answers this in words, tools or not; "auto" leaves it that choice (the call
    # branch of the grammar: tests/engine/test_grammar.py, its parsing: tests/test_tool_calls.py).
    hello: Any = [{"role": "user", "content": "Say hello."}]

    whole = sdk.chat.completions.create(model=MODEL, messages=hello, tools=TOOLS, temperature=0)
    chunks = list(
        sdk.chat.completions.create(model=MODEL, messages=hello, tools=TOOLS, temperature=0, stream=True)
    )

    assert whole.choices[0].finish_reason == "stop"
    assert whole.choices[0].message.tool_calls is None
    assert whole.choices[0].message.content == "Hello."
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == "Hello."


def test_a_named_function_streams_its_call_as_openais_deltas(sdk: openai.OpenAI) -> None:
    choice: Any = {"type": "function", "function": {"name": "get_time"}}

    chunks = list(
        sdk.chat.completions.create(
            model=MODEL, messages=WEATHER, tools=TOOLS, tool_choice=choice, temperature=0, stream=True
        )
    )  # type: ignore[arg-type]
    whole = sdk.chat.completions.create(
        model=MODEL, messages=WEATHER, tools=TOOLS, tool_choice=choice, temperature=0
    )  # type: ignore[arg-type]

    deltas = [delta for chunk in chunks if chunk.choices for delta in chunk.choices[0].delta.tool_calls or []]
    assert deltas[0].id is not None
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_time"
    assert all(delta.id is None and delta.index == 0 for delta in deltas[1:])
    arguments = "".join(delta.function.arguments or "" for delta in deltas if delta.function)
    jsonschema.validate(json.loads(arguments), TOOLS[1]["function"]["parameters"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert whole.choices[0].message.tool_calls is not None
    assert whole.choices[0].message.tool_calls[0].function.arguments == arguments  # type: ignore[union-attr]


def test_the_sdks_parse_with_a_strict_tool_gets_parsed_arguments(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.parse(
        model=MODEL, messages=WEATHER, tools=[TOOLS[0]], tool_choice="required", temperature=0
    )  # type: ignore[arg-type]

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.parsed_arguments == GetWeather(city="Paris")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "strnig"}},
                }
            },
            "invalid_schema",
            "response_format",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}},
                        },
                    }
                ],
                "tool_choice": "required",
            },
            "invalid_schema",
            "tools",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "city", "schema": City.model_json_schema()},
                },
                "max_tokens": 3,
            },
            "max_tokens_below_schema",
            "max_tokens",
        ),
    ],
)
def test_a_schema_that_cannot_work_is_a_400_naming_it(
    real_server_url: str, body: dict[str, Any], code: str, param: str
) -> None:
    response = httpx.post(
        f"{real_server_url}/v1/chat/completions", json={"model": MODEL, "messages": PARIS, **body}, timeout=60
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert httpx.get(f"{real_server_url}/health").status_code == 200
