"""The answer's text as OpenAI's content and tool_calls, streamed or whole (no model needed)."""

from __future__ import annotations

import json

import pytest

from service.openai_tools import ToolCallDelta
from service.tool_calls import AutoToolCalls, ToolCallText

CALL = '{"name":"get_weather","arguments":{"city":"Paris"}}'


def streamed(writer: AutoToolCalls | ToolCallText, pieces: list[str]) -> tuple[str, list[ToolCallDelta]]:
    content, deltas = "", []
    for piece in pieces:
        more_content, more_deltas = writer.feed(piece)
        content, deltas = content + more_content, deltas + more_deltas
    rest_content, rest_deltas = writer.finish()
    return content + rest_content, deltas + rest_deltas


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_call_the_model_names_streams_its_name_then_its_arguments(size: int) -> None:
    writer = ToolCallText(None)

    content, deltas = streamed(writer, pieces_of(CALL, size))

    assert content == ""
    assert deltas[0].id == writer.id
    assert deltas[0].function.name == "get_weather"
    assert all(delta.id is None for delta in deltas[1:])
    assert "".join(delta.function.arguments or "" for delta in deltas) == '{"city":"Paris"}'


def test_a_named_functions_text_is_its_arguments() -> None:
    content, calls = ToolCallText("get_time").whole('{"zone":"CET"}')

    assert content is None
    assert calls is not None
    assert (calls[0].function.name, calls[0].function.arguments) == ("get_time", '{"zone":"CET"}')


@pytest.mark.parametrize("size", [1, 4, 100])
def test_auto_streams_text_as_content(size: int) -> None:
    writer = AutoToolCalls()

    content, deltas = streamed(writer, pieces_of("Hello, there.", size))

    assert (content, deltas, writer.called) == ("Hello, there.", [], False)


@pytest.mark.parametrize("size", [1, 5, 100])
def test_auto_streams_a_call_that_starts_with_a_brace(size: int) -> None:
    writer = AutoToolCalls()

    content, deltas = streamed(writer, pieces_of(CALL, size))

    assert content == ""
    assert writer.called
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(delta.function.arguments or "" for delta in deltas)) == {"city": "Paris"}
    assert writer.calls[0].function.arguments == '{"city":"Paris"}'


def test_auto_takes_mistrals_array_of_calls_whole() -> None:
    # After [TOOL_CALLS] (a special token the text leaves out): one array, two calls.
    text = f' [{CALL},{{"name":"get_time","arguments":{{"zone":"CET"}}}}]'

    content, calls = AutoToolCalls().whole(text)

    assert content is None
    assert calls is not None
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "CET"}),
    ]
    assert len({call.id for call in calls}) == 2
    _, deltas = streamed(AutoToolCalls(), pieces_of(text, 7))
    assert [delta.index for delta in deltas] == [0, 1]


def test_an_array_cut_before_it_closes_comes_back_as_text() -> None:
    # Only where the grammar could not complete it (a schema the search gives up on).
    content, calls = AutoToolCalls().whole(' [{"name":"get_wea')

    assert (content, calls) == ('[{"name":"get_wea', None)
