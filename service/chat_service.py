"""What both chat endpoints share: checks and admission before the stream (service.generation: during it).

The routes translate their own request bodies into messages and sampling
parameters, call :meth:`ChatService.start`, and write the resulting
:class:`ChatGeneration` in their own wire format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.admission import AdmissionController
from service.engine.base import (
    DEFAULT_TEMPLATE,
    Engine,
    InvalidPromptError,
    Message,
    OutputGrammar,
    Prompt,
    SamplingParams,
    TemplateOptions,
)
from service.errors import ErrorCode
from service.generation import ChatGeneration, GenerationContext
from service.instance import current_instance
from service.metrics import Metrics
from service.schemas import ChatRequest, InstanceInfo, stop_tuple
from service.settings import Settings

# Below this, sampling divides logits by ~0 and overflows: treat it as greedy, as vLLM does.
_GREEDY_TEMPERATURE = 1e-5


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
        self._generations = GenerationContext(
            engine, admission, metrics, instance, settings.request_timeout, self.active
        )

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
        top_k: int = 0,
        min_p: float = 0.0,
        min_new_tokens: int = 0,
        min_param_name: str = "min_new_tokens",
        logprobs: int | None = None,
    ) -> SamplingParams:
        """Apply the server's limit for max_new_tokens, and its default when not given (which
        :meth:`start` then lowers to what the context leaves, with ``fit_to_context``).
        Raises :class:`APIError`."""
        limit = self.settings.max_new_tokens_limit
        if max_new_tokens is None:
            max_new_tokens = min(self.settings.max_new_tokens, limit)
        elif max_new_tokens > limit:
            raise ErrorCode.MAX_NEW_TOKENS_TOO_LARGE.error(
                f"{param_name} is {max_new_tokens}, above this server's limit of {limit}", param=param_name
            )
        if min_new_tokens > max_new_tokens:
            raise ErrorCode.MIN_TOKENS_ABOVE_MAX.error(
                f"{min_param_name} is {min_new_tokens}, above the {max_new_tokens} tokens asked for at most",
                param=min_param_name,
            )
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=0.0 if temperature < _GREEDY_TEMPERATURE else temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
            ignore_eos=ignore_eos,
            top_k=max(top_k, 0),  # vLLM's -1 and 0 both mean off
            min_p=min_p,
            min_new_tokens=min_new_tokens,
            logprobs=logprobs,
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
            top_k=body.top_k,
            min_p=body.min_p,
            min_new_tokens=body.min_new_tokens,
        )
        template = TemplateOptions(
            add_generation_prompt=body.add_generation_prompt,
            continue_final_message=body.continue_final_message,
        )
        messages = [Message(role=m.role, content=m.content) for m in body.messages]
        return await self.start(messages, params, template, fit_to_context=body.max_new_tokens is None)

    async def start(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        template: TemplateOptions = DEFAULT_TEMPLATE,
        *,
        fit_to_context: bool = False,
        param_name: str = "max_new_tokens",
        tools: Sequence[dict[str, Any]] = (),
        answer_schema: str | None = None,
        text_allowed: bool = False,
        schema_param: str = "response_format",
    ) -> ChatGeneration:
        """Check the request against the model and admit it; its generation waits for a slot in ``texts()``.

        ``fit_to_context``: the client asked for no length, so ``params.max_new_tokens`` (the
        server's default) is lowered to what the context leaves after the prompt instead of
        refusing a long prompt for a default it never asked for. ``param_name``: the length field
        the client sent, for the error message. ``tools`` go to the chat template; with
        ``answer_schema`` (JSON text) the answer is decoded under it (``schema_param``: the field
        it came from, for the error message); with ``text_allowed``, under it or as free text.

        Raises :class:`APIError`: 400 for a prompt the model cannot take, 429 when
        the queue is full, 503 while loading or draining.
        """
        arrival = _Arrival.now()
        self._refuse_now()
        self.engine.announce()
        await self._refuse_far_too_long(messages)
        if answer_schema is not None:
            grammar = await self._compile(answer_schema, text_allowed, schema_param)
            params = dataclasses.replace(params, grammar=grammar)
        try:
            prompt = await self.engine.render_prompt(messages, template, tools)
        except InvalidPromptError as exc:
            raise ErrorCode.INVALID_MESSAGES.error(str(exc), param=exc.param) from exc
        return self._admit(prompt, params, arrival, fit_to_context, param_name)

    async def _compile(self, schema: str, text_allowed: bool, param: str) -> OutputGrammar:
        try:
            return await self.engine.compile_json_schema(schema, text_allowed)
        except InvalidPromptError as exc:
            raise ErrorCode.INVALID_SCHEMA.error(str(exc), param=param) from exc

    async def start_text(
        self, text: str, params: SamplingParams, *, fit_to_context: bool, param_name: str = "max_tokens"
    ) -> ChatGeneration:
        """:meth:`start` for a plain prompt (``/v1/completions``): tokenized as it is, no template."""
        arrival = _Arrival.now()
        self._refuse_now()
        self.engine.announce()
        await self._refuse_far_too_long([Message(role="user", content=text)])
        try:
            prompt = await self.engine.tokenize(text)
        except InvalidPromptError as exc:
            raise ErrorCode.INVALID_MESSAGES.error(str(exc), param=exc.param) from exc
        return self._admit(prompt, params, arrival, fit_to_context, param_name)

    def _refuse_now(self) -> None:
        """What is refused before any work: a draining or loading server, or a full one."""
        if self.admission.draining:
            raise ErrorCode.SHUTTING_DOWN.error("the server is shutting down")
        if not self.engine.ready:
            raise ErrorCode.MODEL_NOT_READY.error(
                f"not ready: {self.engine.status.reason}", headers={"Retry-After": "5"}
            )
        self.admission.check_capacity()

    def _admit(
        self,
        prompt: Prompt,
        params: SamplingParams,
        arrival: _Arrival,
        fit_to_context: bool,
        param_name: str,
    ) -> ChatGeneration:
        params = self._fit_to_context(len(prompt.token_ids), params, fit_to_context, param_name)
        request_timeout = self.settings.request_timeout
        deadline = arrival.loop_time + request_timeout if request_timeout > 0 else None
        ticket = self.admission.admit()
        queue_timeout = self.settings.queue_timeout
        now = asyncio.get_running_loop().time()
        queue_deadline = _earliest(now + queue_timeout if queue_timeout > 0 else None, deadline)
        generation = ChatGeneration(
            self._generations, prompt, params, ticket, arrival.perf_counter, deadline, queue_deadline
        )
        self.active.add(generation)
        return generation

    async def _refuse_far_too_long(self, messages: Sequence[Message]) -> None:
        """400 for messages that surely exceed the context, before the whole of them is templated
        and tokenized (a 1 MB prompt took 3.3 s, stalling every stream meanwhile)."""
        at_least = await self.engine.prompt_tokens_at_least(messages)
        if at_least >= self.engine.context_length:
            raise ErrorCode.CONTEXT_LENGTH_EXCEEDED.error(
                f"the messages are at least {at_least} tokens, but the model's context is "
                f"{self.engine.context_length} tokens: shorten the messages",
                param="messages",
            )

    def _fit_to_context(
        self, prompt_tokens: int, params: SamplingParams, fit_to_context: bool, param_name: str
    ) -> SamplingParams:
        """``params`` with a length that fits beside the prompt; 400 when none does."""
        context_length = self.engine.context_length
        room = context_length - prompt_tokens
        if fit_to_context and max(1, params.min_new_tokens) <= room < params.max_new_tokens:
            return dataclasses.replace(params, max_new_tokens=room)
        if params.max_new_tokens > room:
            asked = "" if fit_to_context else f" and {params.max_new_tokens} new tokens were asked for"
            lower = "" if fit_to_context else f" or lower {param_name}"
            raise ErrorCode.CONTEXT_LENGTH_EXCEEDED.error(
                f"the prompt has {prompt_tokens} tokens{asked}, but the model's context is "
                f"{context_length} tokens: shorten the messages{lower}",
                param="messages",
            )
        shortest = params.grammar.shortest_tokens if params.grammar else 0
        if params.max_new_tokens < shortest:
            raise ErrorCode.MAX_TOKENS_BELOW_SCHEMA.error(
                f"{param_name} is {params.max_new_tokens}, but the shortest answer the schema allows "
                f"takes {shortest} tokens",
                param=param_name,
            )
        return params


@dataclass(frozen=True)
class _Arrival:
    """When a request arrived, on both clocks: timings use perf_counter, deadlines the event loop's."""

    perf_counter: float
    loop_time: float

    @classmethod
    def now(cls) -> _Arrival:
        return cls(time.perf_counter(), asyncio.get_running_loop().time())


def _earliest(*deadlines: float | None) -> float | None:
    present = [deadline for deadline in deadlines if deadline is not None]
    return min(present) if present else None


def build_chat_service(settings: Settings, engine: Engine) -> ChatService:
    """The chat service with its admission control and metrics, as every front end uses it."""
    admission = AdmissionController(
        max_concurrency=settings.generation_slots,
        max_queue=settings.max_queue,
    )
    metrics = Metrics()
    metrics.track_admission(lambda: admission.running, lambda: admission.waiting)
    instance = current_instance(settings.instance_id)
    metrics.describe_instance(instance.id, instance.started_at)
    return ChatService(engine, settings, instance, admission, metrics)
