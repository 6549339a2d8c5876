"""What both chat endpoints share: checks before the stream, timings during it.

The routes translate their own request bodies into messages and sampling
parameters, call :meth:`ChatService.start`, and write the resulting
:class:`ChatGeneration` in their own wire format.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from service.engine.base import (
    Engine,
    GenerationFinished,
    InvalidPromptError,
    Message,
    SamplingParams,
    TextDelta,
)
from service.errors import APIError
from service.schemas import ChatDone, InstanceInfo, Timings, Usage
from service.settings import Settings


class ChatGeneration:
    """One request's running generation.

    Iterate :meth:`texts` for the text; afterwards :attr:`done` holds the finish
    reason, usage and timings. :class:`~service.engine.base.EngineError` is
    raised from :meth:`texts` if generation fails after it started.
    """

    def __init__(
        self,
        events: AsyncIterator[TextDelta | GenerationFinished],
        received_at: float,
        instance: InstanceInfo,
    ) -> None:
        self._events = events
        self._received_at = received_at
        self._instance = instance
        self.done: ChatDone | None = None

    async def texts(self) -> AsyncIterator[str]:
        first_text_at: float | None = None
        # aclosing: if our consumer stops early, the engine's stream is closed now
        # (which cancels the generation), not whenever it is garbage-collected.
        async with contextlib.aclosing(self._events) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    if first_text_at is None:
                        first_text_at = time.perf_counter()
                    yield event.text
                else:
                    finished_at = time.perf_counter()
                    self.done = self._summarise(event, first_text_at or finished_at, finished_at)

    def _summarise(self, event: GenerationFinished, first_text_at: float, finished_at: float) -> ChatDone:
        return ChatDone(
            finish_reason=event.finish_reason,
            usage=Usage(
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                total_tokens=event.prompt_tokens + event.completion_tokens,
            ),
            timings=Timings(
                queue_s=round(event.queue_s, 6),
                ttft_s=round(first_text_at - self._received_at, 6),
                total_s=round(finished_at - self._received_at, 6),
            ),
            instance=self._instance,
        )


class ChatService:
    """Validates a chat against the model and starts its generation."""

    def __init__(self, engine: Engine, settings: Settings, instance: InstanceInfo) -> None:
        self.engine = engine
        self.settings = settings
        self.instance = instance

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
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            ignore_eos=ignore_eos,
        )

    async def start(self, messages: Sequence[Message], params: SamplingParams) -> ChatGeneration:
        """Check the request against the model and start generating. Raises :class:`APIError`."""
        received_at = time.perf_counter()
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
        return ChatGeneration(self.engine.generate(prompt, params), received_at, self.instance)
