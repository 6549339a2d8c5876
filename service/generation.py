"""One admitted request's generation: waiting for its slot, deadlines and timings while it streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from service.admission import AdmissionController, Ticket
from service.engine.base import (
    Engine,
    EngineError,
    GenerationEvent,
    GenerationFinished,
    Prompt,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)
from service.errors import APIError, ErrorCode
from service.metrics import Metrics
from service.schemas import ChatDone, InstanceInfo, Timings, Usage


@dataclass(frozen=True)
class GenerationContext:
    """What every generation shares, handed in by the chat service (which this module never imports)."""

    engine: Engine
    admission: AdmissionController
    metrics: Metrics
    instance: InstanceInfo
    request_timeout_s: float
    active: set[ChatGeneration]  # the service's running generations; one leaves it when closed


class ChatGeneration:
    """One admitted request's generation.

    Iterate :meth:`texts` (or :meth:`deltas`) for the text: it first waits for a generation slot
    (so a streaming response can already be open and sending pings), then
    streams. Afterwards :attr:`done` holds the finish reason, usage and timings;
    :attr:`completion_tokens` counts the tokens behind the text so far. A queue
    timeout, a failure or the request deadline raises :class:`APIError` from
    :meth:`texts` (its body is what the client is sent). :meth:`close` must run
    on every path, once the response is written: it stops the generation if it
    still runs and lets admission control forget the request.
    """

    def __init__(
        self,
        context: GenerationContext,
        prompt: Prompt,
        params: SamplingParams,
        ticket: Ticket,
        received_at: float,
        deadline: float | None,
        queue_deadline: float | None,
    ) -> None:
        self._context = context
        self._prompt = prompt
        self._params = params
        self._ticket = ticket
        self._received_at = received_at
        self._deadline = deadline  # event-loop time
        self._queue_deadline = queue_deadline  # event-loop time
        self._events: AsyncIterator[GenerationEvent] | None = None
        self._waiting_for_event: asyncio.Timeout | None = None
        self._abort_reason: str | None = None
        self._outcome: str | None = None
        self._finished = False
        self.prompt_tokens = len(prompt.token_ids)
        self.completion_tokens = 0
        self.done: ChatDone | None = None

    def abort(self, reason: str) -> None:
        """End the stream at its next event with a 503 error event (used by the shutdown drain)."""
        self._abort_reason = reason
        waiting = self._waiting_for_event
        # Only a wait still in progress can be cut short; an exited timeout cannot be rescheduled
        # (RuntimeError), and a stream between events meets the reason at its next one.
        if waiting is not None and not waiting.expired():
            with contextlib.suppress(RuntimeError):
                waiting.reschedule(asyncio.get_running_loop().time())

    async def texts(self) -> AsyncGenerator[str, None]:
        async with contextlib.aclosing(self.deltas()) as deltas:
            async for delta in deltas:
                yield delta.text

    async def deltas(self) -> AsyncGenerator[TextDelta, None]:
        """The text deltas, with their tokens' log-probabilities when the request asked for them."""
        metrics = self._context.metrics
        first_text_at: float | None = None
        last_text_at = 0.0
        try:
            await self._take_slot()
            self._events = self._start_engine()
            while True:
                event = await self._next_event()
                if event is None:
                    return
                now = time.perf_counter()
                if isinstance(event, TextDelta):
                    if first_text_at is None:
                        first_text_at = now
                        metrics.time_to_first_token.observe(now - self._received_at)
                    else:
                        metrics.inter_token_latency.observe(now - last_text_at)
                    last_text_at = now
                    self.completion_tokens = event.completion_tokens
                    yield event
                else:
                    self.completion_tokens = event.completion_tokens
                    self.done = self._summarise(event, first_text_at or now, now)
                    self._outcome = event.finish_reason
        finally:
            await self._finish_generation()

    async def _take_slot(self) -> None:
        if self._abort_reason is not None:
            raise self._aborted()
        try:
            async with asyncio.timeout_at(self._queue_deadline) as self._waiting_for_event:
                await self._context.admission.take_slot(self._ticket)
            self._waiting_for_event = None
        except TimeoutError:
            if self._abort_reason is not None:
                raise self._aborted() from None
            self._outcome = "queue_timeout"
            waited_s = time.perf_counter() - self._ticket.admitted_at
            raise ErrorCode.QUEUE_TIMEOUT.error(
                f"waited {waited_s:.1f}s for a generation slot without getting one",
                headers={"Retry-After": str(self._context.admission.retry_after_s)},
            ) from None

    def _start_engine(self) -> AsyncIterator[GenerationEvent]:
        try:
            return self._context.engine.generate(self._prompt, self._params)
        except EngineError as exc:
            self._outcome = "error"
            raise ErrorCode.GENERATION_FAILED.error(str(exc)) from exc

    async def _next_event(self) -> GenerationEvent | None:
        assert self._events is not None
        if self._abort_reason is not None:
            raise self._aborted()
        try:
            async with asyncio.timeout_at(self._deadline) as self._waiting_for_event:
                event = await anext(self._events)
            self._waiting_for_event = None
            return event
        except StopAsyncIteration:
            return None
        except TimeoutError:
            if self._abort_reason is not None:
                raise self._aborted() from None
            self._outcome = "timeout"
            limit = self._context.request_timeout_s
            raise ErrorCode.REQUEST_TIMEOUT.error(
                f"the request took longer than {limit:g}s and was stopped"
            ) from None
        except EngineError as exc:
            self._outcome = "error"
            raise ErrorCode.GENERATION_FAILED.error(str(exc)) from exc

    def _aborted(self) -> APIError:
        self._outcome = "aborted"
        return ErrorCode.SHUTTING_DOWN.error(str(self._abort_reason))

    async def _finish_generation(self) -> None:
        """Stop generating and give the slot to the next request; the response may still be writing."""
        if self._finished:
            return
        self._finished = True
        try:
            if self._events is not None:
                await self._events.aclose()  # type: ignore[attr-defined]
        finally:
            self._context.admission.free_slot(self._ticket)
            self._context.metrics.generations.labels(outcome=self._outcome or "cancelled").inc()

    async def whole_text(self) -> tuple[str, ChatDone]:
        """For a non-streaming response: all the text and the summary, then :meth:`close`.
        Raises what :meth:`texts` raises."""
        text, _, done = await self.whole_completion()
        return text, done

    async def whole_completion(self) -> tuple[str, list[TokenLogprob], ChatDone]:
        """:meth:`whole_text`, with every token's log-probabilities if the request asked for them."""
        text: list[str] = []
        logprobs: list[TokenLogprob] = []
        try:
            async with contextlib.aclosing(self.deltas()) as deltas:
                async for delta in deltas:
                    text.append(delta.text)
                    logprobs += delta.logprobs
        finally:
            await self.close()
        assert self.done is not None
        return "".join(text), logprobs, self.done

    async def close(self) -> None:
        """Stop generating (if still running) and leave admission control. Idempotent."""
        try:
            await self._finish_generation()
        finally:
            self._context.active.discard(self)
            self._context.admission.leave(self._ticket)

    def _summarise(self, event: GenerationFinished, first_text_at: float, finished_at: float) -> ChatDone:
        metrics = self._context.metrics
        queue_s = self._ticket.waited_s + event.queue_s
        metrics.queue_time.observe(queue_s)
        metrics.e2e_latency.observe(finished_at - self._received_at)
        metrics.prompt_tokens.inc(event.prompt_tokens)
        metrics.generation_tokens.inc(event.completion_tokens)
        return ChatDone(
            finish_reason=event.finish_reason,
            usage=Usage(
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                total_tokens=event.prompt_tokens + event.completion_tokens,
            ),
            timings=Timings(
                queue_s=round(queue_s, 6),
                ttft_s=round(first_text_at - self._received_at, 6),
                total_s=round(finished_at - self._received_at, 6),
            ),
            instance=self._context.instance,
        )
