"""Grammar-constrained decoding on the built-in real model's tokenizer and both engines.

The answer must parse and match the schema whatever the model does and wherever max_tokens
cuts it: checked with jsonschema, a validator independent of the grammar library.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from service.engine.base import (
    Engine,
    InvalidPromptError,
    Message,
    SamplingParams,
)
from service.engine.grammar import ConstrainedRow, GrammarCompiler, JsonGrammar
from tests.engine.test_real_model import complete, real_engine

CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "kind": {"enum": ["capital", "town"]},
    },
    "required": ["city", "population", "tags", "kind"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def compiler(real_tokenizer: Any) -> GrammarCompiler:
    return GrammarCompiler(real_tokenizer, [real_tokenizer.eos_token_id], vocab_size=len(real_tokenizer))


def compile_now(compiler: GrammarCompiler, schema: Any) -> JsonGrammar:
    return asyncio.run(compiler.compile(json.dumps(schema)))


def test_a_schema_compiles_once_and_is_cached(compiler: GrammarCompiler) -> None:
    first = compile_now(compiler, CITY)

    assert compile_now(compiler, CITY) is first
    assert first.shortest_tokens > 0


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ("{not json", "not valid JSON"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}},
            "cannot be used",
        ),
        ({"type": "strnig"}, "cannot be used"),
    ],
)
def test_a_schema_the_library_rejects_names_the_problem(
    compiler: GrammarCompiler, schema: Any, problem: str
) -> None:
    text = schema if isinstance(schema, str) else json.dumps(schema)

    with pytest.raises(InvalidPromptError, match=problem) as raised:
        asyncio.run(compiler.compile(text))
    assert raised.value.param == "response_format"


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        '{"city":"Pa',
        '{"city":"Paris","population":21',
        '{"city":"Paris","population":21,"tags":["a"',
        '{"city":"Paris","population":2,"tags":["a","b"],"kind":"ca',
    ],
)
def test_the_completion_from_any_point_gives_valid_json(
    compiler: GrammarCompiler, real_tokenizer: Any, prefix: str
) -> None:
    matcher = compile_now(compiler, CITY).matcher()
    prefix_ids = real_tokenizer.encode(prefix, add_special_tokens=False)
    assert matcher.try_consume_tokens(prefix_ids) == len(prefix_ids)

    completion = compiler.completion(matcher)

    assert completion is not None
    jsonschema.validate(json.loads(real_tokenizer.decode(prefix_ids + completion)), CITY)
    assert matcher.try_consume_tokens(completion) == len(completion)  # the search left the matcher as it was


def answer(
    engine: Engine, schema: Any, max_new_tokens: int, temperature: float = 0.0, seed: int = 1
) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason) of an answer under ``schema``."""

    async def run() -> tuple[str, int, str]:
        grammar = await engine.compile_json_schema(json.dumps(schema))
        params = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, grammar=grammar
        )
        return await complete(engine, [Message("user", "Describe Paris as JSON.")], params)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def engine(real_model_cache_dir: Path, smollm2_dir: Path, engine_name: str) -> Any:
    started = real_engine(real_model_cache_dir, engine_name)
    asyncio.run(started.start())
    yield started
    asyncio.run(started.close())


def test_a_constrained_answer_is_valid_wherever_max_tokens_cuts_it(engine: Engine) -> None:
    shortest = asyncio.run(engine.compile_json_schema(json.dumps(CITY))).shortest_tokens
    for max_new_tokens in (shortest, shortest + 3, shortest + 11, 40):
        for temperature in (0.0, 1.0):
            text, tokens, finish_reason = answer(engine, CITY, max_new_tokens, temperature)

            jsonschema.validate(json.loads(text), CITY)
            assert tokens <= max_new_tokens
            if finish_reason == "length":
                assert tokens == max_new_tokens


def test_both_engines_write_the_same_constrained_answer(
    real_model_cache_dir: Path, smollm2_dir: Path
) -> None:
    texts = []
    for name in ("sequential", "batched"):
        engine = real_engine(real_model_cache_dir, name)
        asyncio.run(engine.start())
        try:
            texts.append(answer(engine, CITY, 30, temperature=0.9, seed=5)[0])
        finally:
            asyncio.run(engine.close())

    assert texts[0] == texts[1]
    jsonschema.validate(json.loads(texts[0]), CITY)


def test_a_schema_the_search_cannot_complete_is_still_enforced(compiler: GrammarCompiler) -> None:
    # JSON Schema matches a "pattern" anywhere in the string: the bounded search gives up on it
    # (in milliseconds) and the grammar still holds, without the promise for a cut answer.
    grammar = compile_now(compiler, {"type": "string", "pattern": "(a|b)*a(a|b){15}"})

    assert not grammar.completes_when_cut
    assert grammar.shortest_tokens == 0


WEATHER_CALL = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    "required": ["name", "arguments"],
}


def consumes(grammar: JsonGrammar, token_ids: list[int]) -> bool:
    matcher = grammar.matcher()
    return matcher.try_consume_tokens(token_ids) == len(token_ids) and matcher.is_accepting()


def test_auto_takes_text_or_a_valid_call(compiler: GrammarCompiler, real_tokenizer: Any) -> None:
    grammar = asyncio.run(compiler.compile(json.dumps(WEATHER_CALL), text_allowed=True))

    def encode(text: str) -> list[int]:
        return real_tokenizer.encode(text, add_special_tokens=False)

    assert consumes(grammar, encode('{"name":"get_weather","arguments":{"city":"Paris"}}'))
    assert consumes(grammar, encode("It is sunny in Paris."))
    assert not consumes(grammar, encode('{"name":"get_time","arguments":{}}'))  # not a tool it has
    assert not consumes(grammar, encode(' {"name":'))  # text never starts like a call, nor with a space


def test_auto_takes_mistrals_own_format_where_the_tokenizer_has_it(smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[TOOL_CALLS]"]})
    marker = tokenizer.convert_tokens_to_ids("[TOOL_CALLS]")
    compiler = GrammarCompiler(tokenizer, [tokenizer.eos_token_id], vocab_size=len(tokenizer))
    grammar = asyncio.run(compiler.compile(json.dumps(WEATHER_CALL), text_allowed=True))
    array = tokenizer.encode(
        ' [{"name":"get_weather","arguments":{"city":"Paris"}}]', add_special_tokens=False
    )

    assert consumes(grammar, [marker, *array])
    assert not consumes(grammar, array)  # the array only after the model's own marker


@pytest.mark.parametrize("max_new_tokens", [3, 4, 7, 12])
def test_a_row_that_keeps_opening_is_closed_within_its_tokens(
    compiler: GrammarCompiler, real_tokenizer: Any, max_new_tokens: int
) -> None:
    # A "model" that always opens another nested list when it may: the row must take its
    # tokens back in time and write the completion instead.
    schema = {"type": "array", "items": {"$ref": "#"}}
    row = ConstrainedRow(compile_now(compiler, schema), max_new_tokens)
    opening = real_tokenizer.encode("[", add_special_tokens=False)[0]
    written = []
    for _ in range(max_new_tokens):
        allowed = row.allowed()
        wanted = opening if bool(allowed[opening]) else int(allowed.nonzero()[0])
        written.append(row.take(wanted))
        if written[-1] == compiler.eos_token_id:
            break

    text = real_tokenizer.decode([token for token in written if token != compiler.eos_token_id])
    jsonschema.validate(json.loads(text), schema)
    assert len(written) <= max_new_tokens
