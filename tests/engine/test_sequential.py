"""The one-at-a-time engine, driven directly (no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from service.engine.base import (
    EngineError,
    EngineState,
    GenerationFinished,
    InvalidPromptError,
    Message,
    SamplingParams,
    TextDelta,
)
from service.engine.sequential import SequentialEngine
from service.settings import Settings

HELLO = [Message(role="user", content="hello")]


def run(coro_fn: Callable[[SequentialEngine], object], settings: Settings) -> object:
    async def main() -> object:
        engine = SequentialEngine(settings)
        await engine.start()
        try:
            return await coro_fn(engine)  # type: ignore[misc]
        finally:
            await engine.close()

    return asyncio.run(main())


def test_start_loads_warms_up_and_close_stops(settings: Settings) -> None:
    async def check(engine: SequentialEngine) -> None:
        assert engine.ready
        assert engine.context_length == 2048
        await engine.start()  # a second start is a no-op
        assert engine.status.state is EngineState.READY

    run(check, settings)


def test_events_end_with_exactly_one_finish(settings: Settings) -> None:
    async def check(engine: SequentialEngine) -> list[object]:
        prompt = await engine.render_prompt(HELLO)
        return [e async for e in engine.generate(prompt, SamplingParams(max_new_tokens=10, ignore_eos=True))]

    events = run(check, settings)

    assert isinstance(events, list)
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    finished = events[-1]
    assert isinstance(finished, GenerationFinished)
    assert finished.completion_tokens == 10


def test_closing_the_stream_stops_the_generation(settings: Settings) -> None:
    async def check(engine: SequentialEngine) -> float:
        prompt = await engine.render_prompt(HELLO)
        long = engine.generate(prompt, SamplingParams(max_new_tokens=1500, ignore_eos=True))
        await anext(long)
        await long.aclose()  # what a client disconnect does
        # The next request starts at once instead of waiting for 1500 abandoned tokens.
        short = [e async for e in engine.generate(prompt, SamplingParams(max_new_tokens=1))]
        finished = short[-1]
        assert isinstance(finished, GenerationFinished)
        return finished.queue_s

    queue_s = run(check, settings)

    assert isinstance(queue_s, float)
    assert queue_s < 0.5, f"waited {queue_s:.2f}s: the abandoned generation kept running"


def test_template_errors_are_the_clients(settings: Settings) -> None:
    async def check(engine: SequentialEngine) -> None:
        # A role the template does not know renders nothing; a non-string explodes in Jinja.
        with pytest.raises(InvalidPromptError):
            await engine.render_prompt([Message(role="user", content=None)])  # type: ignore[arg-type]

    run(check, settings)


def test_generate_before_start_raises(settings: Settings) -> None:
    engine = SequentialEngine(settings)

    with pytest.raises(EngineError, match="not ready"):
        engine.generate(None, SamplingParams(max_new_tokens=1))  # type: ignore[arg-type]
