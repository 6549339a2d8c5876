"""What both chat endpoints share: checks and admission before the stream, deadlines and timings during it.

The routes translate their own request bodies into messages and sampling
parameters, call :meth:`ChatService.start`, and write the resulting
:class:`ChatGeneration` in their own wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from service.admission import AdmissionController, Ticket
from service.engine.base import (
    Engine,
    EngineError,
    GenerationEvent,
    GenerationFinished,
    InvalidPromptError,
    Message,
    Prompt,
    SamplingParams,
    TextDelta,
)
from service.errors import APIError
from service.instance import current_instance
from service.metrics import Metrics
from service.schemas import ChatDone, ChatRequest, InstanceInfo, Timings, Usage, stop_tuple
from service.settings import Settings

# Below this, sampling divides logits by ~0 and overflows: treat it as greedy, as vLLM does.
_GREEDY_TEMPERATURE = 1e-5


class ChatGeneration:
    """One admitted request's generation.

    Iterate :meth:`texts` for the text: it first waits for a generation slot
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
        service: ChatService,
        prompt: Prompt,
        params: SamplingParams,
        ticket: Ticket,
        received_at: float,
        deadline: float | None,
        queue_deadline: float | None,
    ) -> None:
        self._service = service
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

    async def texts(self) -> AsyncIterator[str]:
        metrics = self._service.metrics
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
                    yield event.text
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
                await self._service.admission.take_slot(self._ticket)
            self._waiting_for_event = None
        except TimeoutError:
            if self._abort_reason is not None:
                raise self._aborted() from None
            self._outcome = "queue_timeout"
            waited_s = time.perf_counter() - self._ticket.admitted_at
            raise APIError(
                503,
                f"waited {waited_s:.1f}s for a generation slot without getting one",
                code="queue_timeout",
                headers={"Retry-After": str(self._service.admission.retry_after_s)},
            ) from None

    def _start_engine(self) -> AsyncIterator[GenerationEvent]:
        try:
            return self._service.engine.generate(self._prompt, self._params)
        except EngineError as exc:
            self._outcome = "error"
            raise APIError(500, str(exc), error_type="server_error", code="generation_failed") from exc

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
            limit = self._service.settings.request_timeout
            raise APIError(
                504, f"the request took longer than {limit:g}s and was stopped", code="request_timeout"
            ) from None
        except EngineError as exc:
            self._outcome = "error"
            raise APIError(500, str(exc), error_type="server_error", code="generation_failed") from exc

    def _aborted(self) -> APIError:
        self._outcome = "aborted"
        return APIError(503, str(self._abort_reason), code="shutting_down")

    async def _finish_generation(self) -> None:
        """Stop generating and give the slot to the next request; the response may still be writing."""
        if self._finished:
            return
        self._finished = True
        try:
            if self._events is not None:
                await self._events.aclose()  # type: ignore[attr-defined]
        finally:
            self._service.admission.free_slot(self._ticket)
            self._service.metrics.generations.labels(outcome=self._outcome or "cancelled").inc()

    async def close(self) -> None:
        """Stop generating (if still running) and leave admission control. Idempotent."""
        try:
            await self._finish_generation()
        finally:
            self._service.active.discard(self)
            self._service.admission.leave(self._ticket)

    def _summarise(self, event: GenerationFinished, first_text_at: float, finished_at: float) -> ChatDone:
        metrics = self._service.metrics
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
            instance=self._service.instance,
        )


class ChatService:
    """Validates a chat against the model, admits it, and starts its generation."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        instance: InstanceInfo,
        admission: AdmissionController,
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.instance = instance
        self.admission = admission
        self.metrics = metrics
        self.active: set[ChatGeneration] = set()

    def abort_all(self, reason: str) -> int:
        """End every running stream with an error event; returns how many there were."""
        for generation in list(self.active):
            generation.abort(reason)
        return len(self.active)

    def sampling_params(
        self,
        *,
        max_new_tokens: int | None,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: tuple[str, ...],
        ignore_eos: bool,
        param_name: str = "max_new_tokens",
    ) -> SamplingParams:
        """Apply the server's default and limit for max_new_tokens. Raises :class:`APIError`."""
        limit = self.settings.max_new_tokens_limit
        if max_new_tokens is None:
            max_new_tokens = min(self.settings.max_new_tokens, limit)
        elif max_new_tokens > limit:
            raise APIError(
                400,
                f"{param_name} is {max_new_tokens}, above this server's limit of {limit}",
                param=param_name,
                code="max_new_tokens_too_large",
            )
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=0.0 if temperature < _GREEDY_TEMPERATURE else temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            ignore_eos=ignore_eos,
        )

    async def start_native(self, body: ChatRequest) -> ChatGeneration:
        """Start a /v1/chat request (also a RunPod job's input). Raises :class:`APIError`."""
        params = self.sampling_params(
            max_new_tokens=body.max_new_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=stop_tuple(body.stop),
            ignore_eos=body.ignore_eos,
        )
        return await self.start([Message(role=m.role, content=m.content) for m in body.messages], params)

    async def start(self, messages: Sequence[Message], params: SamplingParams) -> ChatGeneration:
        """Check the request against the model and admit it; its generation waits for a slot in ``texts()``.

        Raises :class:`APIError`: 400 for a prompt the model cannot take, 429 when
        the queue is full, 503 while loading or draining.
        """
        received_at = time.perf_counter()
        loop = asyncio.get_running_loop()
        request_timeout = self.settings.request_timeout
        deadline = loop.time() + request_timeout if request_timeout > 0 else None
        if self.admission.draining:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        if not self.engine.ready:
            raise APIError(503, f"not ready: {self.engine.status.reason}", headers={"Retry-After": "5"})
        try:
            prompt = await self.engine.render_prompt(messages)
        except InvalidPromptError as exc:
            raise APIError(400, str(exc), param=exc.param, code="invalid_messages") from exc
        budget = self.engine.context_length - params.max_new_tokens
        if len(prompt.token_ids) > budget:
            raise APIError(
                400,
                f"the prompt has {len(prompt.token_ids)} tokens and {params.max_new_tokens} new tokens "
                f"were asked for, but the model's context is {self.engine.context_length} tokens: "
                "shorten the messages or lower max_new_tokens",
                param="messages",
                code="context_length_exceeded",
            )
        ticket = self.admission.admit()
        queue_timeout = self.settings.queue_timeout
        queue_deadline = _earliest(loop.time() + queue_timeout if queue_timeout > 0 else None, deadline)
        generation = ChatGeneration(self, prompt, params, ticket, received_at, deadline, queue_deadline)
        self.active.add(generation)
        return generation


def _earliest(*deadlines: float | None) -> float | None:
    present = [deadline for deadline in deadlines if deadline is not None]
    return min(present) if present else None


def build_chat_service(settings: Settings, engine: Engine) -> ChatService:
    """The chat service with its admission control and metrics, as every front end uses it."""
    admission = AdmissionController(
        max_concurrency=settings.max_concurrency or engine.max_concurrency,
        max_queue=settings.max_queue,
    )
    metrics = Metrics()
    metrics.track_admission(lambda: admission.running, lambda: admission.waiting)
    return ChatService(engine, settings, current_instance(settings.instance_id), admission, metrics)
