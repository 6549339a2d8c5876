"""From an inference thread's token ids to the events the HTTP layer streams.

Both engines run the model on a thread of their own and hand each step's token
ids to the event loop as an :data:`Output` (through a :class:`Mailbox`).
Here, on the event loop, the ids become text (:class:`Detokenizer`), stop strings
end the generation, and what piled up while the client read slowly goes out as
one delta.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol

from service.engine.base import EngineError, GenerationEvent, GenerationFinished, TextDelta, TokenLogprob
from service.engine.logprobs import SampledLogprobs, named_logprobs
from service.engine.streamer import Detokenizer

# (token ids, finished, error, their log-probabilities if asked for), from the inference
# thread. An error comes with finished=True.
Output = tuple[list[int], bool, BaseException | None, list[SampledLogprobs] | None]


class OutputSink(Protocol):
    """Called on the inference thread with each step's token ids; the last call has finished=True."""

    def __call__(
        self,
        token_ids: list[int],
        finished: bool = False,
        error: BaseException | None = None,
        logprobs: list[SampledLogprobs] | None = None,
    ) -> None: ...


class Mailbox:
    """Hands outputs from an inference thread to queues on one event loop, one wake-up per burst.

    Each ``call_soon_threadsafe`` wakes the loop's thread, which then takes the GIL while the
    model's thread wants it back: per token that costs a single stream ~9% of its speed on
    the 2-core CPU (scripts/measure_handoff.py). A batch step has an output for every running
    request; posted here, those that arrive before the loop has woken share one wake-up.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Output], Output]] = []

    def sink(self, outputs: asyncio.Queue[Output]) -> OutputSink:
        """A sink for the inference thread that posts to ``outputs``."""

        def post(
            token_ids: list[int],
            finished: bool = False,
            error: BaseException | None = None,
            logprobs: list[SampledLogprobs] | None = None,
        ) -> None:
            self._post(outputs, (token_ids, finished, error, logprobs))

        return post

    def _post(self, outputs: asyncio.Queue[Output], item: Output) -> None:
        if self.loop.is_closed():  # also when a wake-up was queued before it closed
            raise RuntimeError("the event loop is closed")
        with self._lock:
            self._pending.append((outputs, item))
            wake = len(self._pending) == 1  # otherwise a wake-up is on its way and has not run yet
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody will read these
                with self._lock:
                    self._pending.clear()
                raise

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for outputs, item in pending:
            outputs.put_nowait(item)


class LoopMailbox:
    """An engine's Mailbox for the running event loop (tests run one engine on several loops)."""

    def __init__(self) -> None:
        self._mailbox: Mailbox | None = None

    def sink(self, outputs: asyncio.Queue[Output]) -> OutputSink:
        """Call on the event loop: a sink for the inference thread that posts to ``outputs``."""
        loop = asyncio.get_running_loop()
        if self._mailbox is None or self._mailbox.loop is not loop:
            self._mailbox = Mailbox(loop)
        return self._mailbox.sink(outputs)


async def stream_outputs(
    outputs: asyncio.Queue[Output],
    next_output: Callable[[], Awaitable[Output]],
    detokenizer: Detokenizer,
    *,
    prompt_tokens: int,
    max_new_tokens: int,
    queue_s: Callable[[], float],
    stop_generating: Callable[[], None],
) -> AsyncGenerator[GenerationEvent, None]:
    """Text deltas, then one :class:`GenerationFinished`; raises EngineError for a failed generation.

    When a stop string matches, ``stop_generating`` is called at once (before the last text
    is written to the client: the model stops a step later, not a network write later).
    The caller calls it again in a ``finally``, for a client that left.
    """
    while True:
        token_ids, finished, error, logprobs = await next_output()
        while not finished and not outputs.empty():  # a slow reader gets what piled up at once
            more_ids, finished, error, more_logprobs = outputs.get_nowait()
            token_ids = token_ids + more_ids
            if more_logprobs:
                logprobs = (logprobs or []) + more_logprobs
        if error is not None:
            raise EngineError(f"generation failed: {type(error).__name__}: {error}") from error
        counted_before = detokenizer.completion_tokens
        text = detokenizer.feed(token_ids)
        named: tuple[TokenLogprob, ...] = ()
        if logprobs:  # those of the tokens behind the text: none after a stop string
            counted = detokenizer.completion_tokens - counted_before
            named = named_logprobs(detokenizer.tokenizer, token_ids[:counted], logprobs[:counted])
        if detokenizer.stop_matched:
            stop_generating()
        done = finished or detokenizer.stop_matched
        if done:
            text += detokenizer.finish()
        if text or named:
            yield TextDelta(text, detokenizer.completion_tokens, named)
        if done:
            completion_tokens = detokenizer.completion_tokens
            length_reached = completion_tokens >= max_new_tokens and not detokenizer.stop_matched
            yield GenerationFinished(
                finish_reason="length" if length_reached else "stop",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                queue_s=queue_s(),
            )
            return
