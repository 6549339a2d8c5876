"""Both engines, driven directly (no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from service.engine.base import (
    Engine,
    EngineError,
    EngineState,
    GenerationFinished,
    InvalidPromptError,
    Message,
    SamplingParams,
    TextDelta,
)
from service.settings import Settings

HELLO = [Message(role="user", content="hello")]


@pytest.fixture
def run(settings: Settings, engine_class: Callable[..., Engine]) -> Callable[..., object]:
    """``run(check)``: start an engine, await ``check(engine)``, close the engine."""

    def run_check(coro_fn: Callable[[Engine], object]) -> object:
        return asyncio.run(_with_engine(engine_class(settings), coro_fn))

    return run_check


async def _with_engine(engine: Engine, coro_fn: Callable[[Engine], object]) -> object:
    await engine.start()
    try:
        return await coro_fn(engine)  # type: ignore[misc]
    finally:
        await engine.close()


def test_start_loads_warms_up_and_close_stops(run: Callable[..., object]) -> None:
    async def check(engine: Engine) -> None:
        assert engine.ready
        assert engine.context_length == 2048
        await engine.start()  # a second start is a no-op
        assert engine.status.state is EngineState.READY

    run(check)


def test_start_times_load_and_warm_up(run: Callable[..., object]) -> None:
    async def check(engine: Engine) -> None:
        startup = engine.status.startup
        assert startup is not None
        assert startup.load_s > 0
        assert startup.warmup_s > 0  # the warm-up generation ran
        assert startup.import_s + startup.load_s + startup.warmup_s == pytest.approx(startup.ready_s)

    run(check)


def test_events_end_with_exactly_one_finish(run: Callable[..., object]) -> None:
    async def check(engine: Engine) -> list[object]:
        prompt = await engine.render_prompt(HELLO)
        return [e async for e in engine.generate(prompt, SamplingParams(max_new_tokens=10, ignore_eos=True))]

    events = run(check)

    assert isinstance(events, list)
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    finished = events[-1]
    assert isinstance(finished, GenerationFinished)
    assert finished.completion_tokens == 10


def test_closing_the_stream_stops_the_generation(run: Callable[..., object]) -> None:
    async def check(engine: Engine) -> float:
        prompt = await engine.render_prompt(HELLO)
        long = engine.generate(prompt, SamplingParams(max_new_tokens=1500, ignore_eos=True))
        await anext(long)
        await long.aclose()  # what a client disconnect does
        # The next request starts at once instead of waiting for 1500 abandoned tokens.
        short = [e async for e in engine.generate(prompt, SamplingParams(max_new_tokens=1))]
        finished = short[-1]
        assert isinstance(finished, GenerationFinished)
        return finished.queue_s

    queue_s = run(check)

    assert isinstance(queue_s, float)
    assert queue_s < 0.5, f"waited {queue_s:.2f}s: the abandoned generation kept running"


def test_template_errors_are_the_clients(run: Callable[..., object]) -> None:
    async def check(engine: Engine) -> None:
        # A role the template does not know renders nothing; a non-string explodes in Jinja.
        with pytest.raises(InvalidPromptError):
            await engine.render_prompt([Message(role="user", content=None)])  # type: ignore[arg-type]

    run(check)


def test_generate_before_start_raises(settings: Settings, engine_class: Callable[..., Engine]) -> None:
    engine = engine_class(settings)

    with pytest.raises(EngineError, match="not ready"):
        engine.generate(None, SamplingParams(max_new_tokens=1))  # type: ignore[arg-type]
