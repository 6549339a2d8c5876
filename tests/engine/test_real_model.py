"""Both engines on the built-in real model (smollm2-135m), driven directly: what random weights hid.

Kept few and short: the model makes ~20 tokens/s on a 2-core CPU.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.engine.base import (
    Engine,
    GenerationFinished,
    Message,
    SamplingParams,
    TemplateOptions,
    TextDelta,
)
from service.settings import Settings

# (question, max_new_tokens): lengths differ so that rows leave the batch at different steps.
QUESTIONS = [
    ("What is the capital of France?", 12),
    ("Say hello in Japanese.", 9),
    ("Translate to Spanish: The boy is happy, the girl is sad.", 22),
    ("Name three colours.", 16),
]


def real_engine(real_model_cache_dir: Path, engine: str, **overrides: Any) -> Engine:
    from service.engine import create_engine

    values: dict[str, Any] = {"model": "smollm2-135m", "cache_dir": real_model_cache_dir, "engine": engine}
    return create_engine(Settings(**{**values, **overrides}))


async def complete(engine: Engine, messages: list[Message], params: SamplingParams) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason) of one generation."""
    prompt = await engine.render_prompt(messages)
    text, finished = "", None
    async for event in engine.generate(prompt, params):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            finished = event
    assert isinstance(finished, GenerationFinished)
    return text, finished.completion_tokens, finished.finish_reason


async def staggered(engine: Engine, requests: list[tuple[list[Message], SamplingParams]]) -> list[Any]:
    """Start the requests 50 ms apart, so each joins a batch that is already decoding."""

    async def one(index: int, messages: list[Message], params: SamplingParams) -> Any:
        await asyncio.sleep(0.05 * index)
        return await complete(engine, messages, params)

    return await asyncio.gather(*(one(i, m, p) for i, (m, p) in enumerate(requests)))


def run_engine(engine: Engine, body: Callable[[Engine], Any]) -> Any:
    async def main() -> Any:
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("temperature", "filters"),
    [(0.0, {}), (0.8, {}), (1.2, {"top_k": 20, "min_p": 0.05, "min_new_tokens": 6})],
    ids=["greedy", "seeded", "seeded-top-k-min-p-min-tokens"],
)
def test_engines_agree_token_for_token_with_rows_joining_and_leaving(
    real_model_cache_dir: Path, smollm2_dir: Path, temperature: float, filters: dict[str, Any]
) -> None:
    requests = [
        (
            [Message(role="user", content=question)],
            SamplingParams(tokens, temperature=temperature, seed=i, **filters),
        )
        for i, (question, tokens) in enumerate(QUESTIONS)
    ]

    async def one_at_a_time(engine: Engine) -> list[Any]:
        return [await complete(engine, messages, params) for messages, params in requests]

    sequential = run_engine(real_engine(real_model_cache_dir, "sequential"), one_at_a_time)
    batched = run_engine(real_engine(real_model_cache_dir, "batched"), lambda e: staggered(e, requests))

    assert batched == sequential
    if temperature == 0:
        assert sequential[0][0] == "The capital of France is Paris."


@pytest.mark.parametrize("engine_kind", ["sequential", "batched"])
def test_text_equals_tokenizer_decode_for_emoji_accents_and_a_cut_mid_character(
    real_model_cache_dir: Path, smollm2_dir: Path, real_tokenizer: Any, engine_kind: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    fruit = [
        Message(role="user", content="Give me a list of fruit emoji."),
        Message(role="assistant", content="🍎 🍌"),
    ]
    cases = [
        (fruit, 12),  # an emoji is three tokens here: 12 ends on a whole one
        (fruit, 5),  # ...and 5 in the middle of the second emoji
        ([Message(role="user", content="Say hello in Japanese.")], 7),  # ends mid-character too
        ([Message(role="user", content="Translate to Spanish: The boy is happy, the girl is sad.")], 24),
    ]
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    expected = []
    for messages, tokens in cases:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        continued = messages[-1].role == "assistant"
        ids = real_tokenizer.apply_chat_template(
            chat, add_generation_prompt=not continued, continue_final_message=continued, return_dict=False
        )
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False)
        expected.append(real_tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))
    assert expected[1].endswith("\ufffd")
    assert expected[2].endswith("\ufffd")
    assert "á" in expected[3]
    assert "🍵" in expected[0]

    async def serve_all(engine: Engine) -> list[str]:
        results = [await complete(engine, m, SamplingParams(t, temperature=0)) for m, t in cases]
        return [text for text, _, _ in results]

    assert run_engine(real_engine(real_model_cache_dir, engine_kind), serve_all) == expected


def test_a_continued_assistant_message_goes_on_from_its_text(
    real_model_cache_dir: Path, smollm2_dir: Path, real_tokenizer: Any
) -> None:
    question = Message(role="user", content="What is the capital of France?")
    prefix = Message(role="assistant", content="The capital of France is")

    async def continue_it(engine: Engine) -> tuple[Any, Any]:
        params = SamplingParams(8, temperature=0)
        continued = await complete(engine, [question, prefix], params)
        closed = TemplateOptions(add_generation_prompt=False, continue_final_message=False)
        prompt = await engine.render_prompt([question, prefix], closed)
        return continued, prompt

    (text, _, finish_reason), closed_turn = run_engine(
        real_engine(real_model_cache_dir, "batched"), continue_it
    )

    assert text == " Paris."
    assert finish_reason == "stop"
    # Asked not to continue, the template closes the assistant's turn as written.
    assert real_tokenizer.decode(closed_turn.token_ids[-3:]) == " is<|im_end|>\n"


def multi_eos_variant(smollm2_dir: Path, out_dir: Path) -> Path:
    """SmolLM2 as some models ship: the tokenizer's EOS is <|endoftext|> (id 0), while the turn
    ends with <|im_end|> (id 2), listed with it in generation_config."""
    out_dir.mkdir()
    for file in smollm2_dir.iterdir():
        if file.name not in ("tokenizer_config.json", "generation_config.json", "config.json"):
            (out_dir / file.name).symlink_to(file)
    for name, edit in [
        ("tokenizer_config.json", {"eos_token": "<|endoftext|>"}),
        ("generation_config.json", {"eos_token_id": [0, 2]}),
        ("config.json", {"eos_token_id": 0}),
    ]:
        values = json.loads((smollm2_dir / name).read_text())
        (out_dir / name).write_text(json.dumps({**values, **edit}))
    return out_dir


@pytest.mark.parametrize("engine_kind", ["sequential", "batched"])
def test_every_eos_the_model_declares_ends_the_answer(
    smollm2_dir: Path, tmp_path: Path, engine_kind: str
) -> None:
    from service.engine import create_engine

    variant = multi_eos_variant(smollm2_dir, tmp_path / "smollm2-multi-eos")
    settings = Settings(model=str(variant), engine=engine_kind, cache_dir=tmp_path / "cache")
    question = [Message(role="user", content="What is the capital of France?")]

    async def ask(engine: Engine) -> tuple[Any, Any]:
        answer = await complete(engine, question, SamplingParams(40, temperature=0))
        ignoring = await complete(engine, question, SamplingParams(12, temperature=0, ignore_eos=True))
        return answer, ignoring

    answer, ignoring = run_engine(create_engine(settings), ask)

    assert answer == ("The capital of France is Paris.", 8, "stop")  # 7 tokens of text and <|im_end|>
    # ignore_eos masks every EOS id: exactly the tokens asked for, the answer and more after it.
    assert ignoring[1] == 12
    assert ignoring[0].startswith("The capital of France is Paris.")
    assert ignoring[2] == "length"
    assert settings.model_name == "smollm2-multi-eos"


@pytest.mark.parametrize("engine_kind", ["sequential", "batched"])
def test_top_k_1_and_min_p_1_are_greedy_and_min_tokens_holds_eos_back(
    real_model_cache_dir: Path, smollm2_dir: Path, engine_kind: str
) -> None:
    question = [Message(role="user", content="What is the capital of France?")]

    async def ask(engine: Engine) -> list[Any]:
        hot = {"temperature": 1.5, "seed": 3}
        return [
            await complete(engine, question, SamplingParams(16, temperature=0)),
            await complete(engine, question, SamplingParams(16, top_k=1, **hot)),  # type: ignore[arg-type]
            await complete(engine, question, SamplingParams(16, min_p=1.0, **hot)),  # type: ignore[arg-type]
            await complete(engine, question, SamplingParams(16, **hot)),  # type: ignore[arg-type]
            await complete(engine, question, SamplingParams(24, temperature=0, min_new_tokens=20)),
        ]

    greedy, top_k_1, min_p_1, hot, at_least_20 = run_engine(
        real_engine(real_model_cache_dir, engine_kind), ask
    )

    assert greedy[0] == "The capital of France is Paris."
    assert top_k_1 == greedy  # was random text: top_k was ignored
    assert min_p_1 == greedy
    assert hot != greedy  # the same temperature without the filters samples
    assert at_least_20[1] >= 20  # was 8: EOS held back until 20 tokens
    assert at_least_20[0].startswith(greedy[0])
