"""What only the sequential engine has: generate() with a static KV cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.engine.base import GenerationFinished, Message, SamplingParams, TextDelta
from service.engine.sequential import SequentialEngine
from service.settings import Settings

PROMPTS = [
    [Message(role="user", content="hello")],
    [Message(role="user", content="a longer prompt, so the second request fills more of the cache " * 4)],
]
REQUESTS = [
    SamplingParams(max_new_tokens=24, temperature=0, ignore_eos=True),
    SamplingParams(max_new_tokens=24, temperature=0.8, top_p=0.9, seed=7, ignore_eos=True),
]


async def generate_all(settings: Settings) -> tuple[list[tuple[str, int]], int, dict[str, str]]:
    engine = SequentialEngine(settings)
    await engine.start()
    try:
        outputs = []
        for messages in PROMPTS:
            prompt = await engine.render_prompt(messages)
            for params in REQUESTS:
                text, tokens = "", 0
                async for event in engine.generate(prompt, params):
                    if isinstance(event, TextDelta):
                        text += event.text
                    elif isinstance(event, GenerationFinished):
                        tokens = event.completion_tokens
                outputs.append((text, tokens))
        return outputs, engine.context_length, engine.status.details
    finally:
        await engine.close()


def test_a_static_cache_gives_the_same_text_as_the_dynamic_one(model_cache_dir: Path) -> None:
    base = {"model": "tiny-random", "cache_dir": model_cache_dir, "engine": "sequential"}

    dynamic, dynamic_context, _ = asyncio.run(generate_all(Settings(**base)))
    static, static_context, details = asyncio.run(
        generate_all(Settings(**base, static_cache=True, static_cache_tokens=256))
    )

    # One cache reused by requests of different lengths, greedy and sampled: the same tokens.
    assert static == dynamic
    assert all(tokens == 24 for _, tokens in static)
    assert dynamic_context == 2048
    assert static_context == 256, "longer requests would not fit the cache: the context says so"
    assert details["cache"] == "static, 256 tokens"
