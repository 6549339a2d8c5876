"""The continuous-batching engine: our batch loop (service.engine.batch_loop) behind the Engine interface.

Requests join and leave the running batch between decode steps, so throughput grows
with concurrency instead of staying at one stream's. The loop runs on its own thread;
each request's tokens reach the event loop through its own asyncio queue and become text
there (service.engine.outputs). Sampling is
per request and batch-independent (service.engine.sampling): a seeded request gives the
same text alone, in a batch, or on the sequential engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from service.engine.arrivals import Arrivals
from service.engine.base import (
    DEFAULT_TEMPLATE,
    Engine,
    EngineError,
    EngineState,
    GenerationEvent,
    Message,
    OutputGrammar,
    Prompt,
    SamplingParams,
    TemplateOptions,
)
from service.engine.batch_loop import MAX_GATHER_GAPS, BatchLoop
from service.engine.batch_request import BatchRequest
from service.engine.grammar import constrained_row
from service.engine.loader import LoadedModel, load_model
from service.engine.outputs import LoopMailbox, Output, stream_outputs
from service.engine.prompt import prompt_tokens_at_least, render_chat, tokenize_text
from service.engine.sampling import random_seed
from service.engine.streamer import Detokenizer
from service.engine.threads import run_on_daemon_thread
from service.settings import EngineSettings

logger = logging.getLogger(__name__)

# How often a waiting request checks that the batch loop's thread is still alive.
_HEALTH_CHECK_S = 2.0


class BatchedEngine(Engine):
    """Serves up to ``max_concurrency`` generations at once in one continuous batch."""

    def __init__(
        self, settings: EngineSettings, loader: Callable[[EngineSettings], LoadedModel] = load_model
    ):
        super().__init__()
        self.model_name = settings.model_name
        self.max_concurrency = settings.generation_slots
        self._settings = settings
        self._loader = loader
        self._loaded: LoadedModel | None = None
        self._batch_loop: BatchLoop | None = None
        self._mailbox = LoopMailbox()
        # Requests announced by the chat service and not yet submitted, forgotten after the
        # longest an idle batch loop gathers arrivals.
        self._arrivals = Arrivals(horizon_s=MAX_GATHER_GAPS * settings.arrival_gap_ms / 1000)

    @property
    def context_length(self) -> int:
        return self._loaded.context_length if self._loaded else 0

    async def _load(self) -> dict[str, str]:
        self._loaded = await run_on_daemon_thread(self._loader, self._settings, name="model-load")
        return {**self._loaded.describe(), "engine": "batched"}

    async def _warm_up(self) -> None:
        """Start the batch loop, then one short generation."""
        loaded = self._loaded
        assert loaded is not None
        self._batch_loop = BatchLoop(
            loaded.model,
            self.max_concurrency,
            pad_token_id=loaded.pad_token_id,
            stop_token_ids=loaded.eos_token_ids,
            prefill_chunk_tokens=self._settings.prefill_chunk_tokens,
            prefill_pass_tokens=self._settings.prefill_pass_tokens,
            arrival_gap_s=self._settings.arrival_gap_ms / 1000,
            on_their_way=self._arrivals.on_their_way,
        )
        if self._settings.warmup_tokens == 0:
            return
        prompt = await render_chat(loaded.tokenizer, [Message(role="user", content="Hello")])
        params = SamplingParams(max_new_tokens=self._settings.warmup_tokens, ignore_eos=True)
        async for _ in self._stream(self._batch_loop, loaded, prompt, params):
            pass

    async def render_prompt(
        self,
        messages: Sequence[Message],
        template: TemplateOptions = DEFAULT_TEMPLATE,
        tools: Sequence[dict[str, Any]] = (),
    ) -> Prompt:
        if self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return await render_chat(self._loaded.tokenizer, messages, template, tools)

    async def tokenize(self, text: str) -> Prompt:
        if self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return await tokenize_text(self._loaded.tokenizer, text)

    async def compile_json_schema(self, schema: str, text_allowed: bool = False) -> OutputGrammar:
        if self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return await self._loaded.grammars.compile(schema, text_allowed)

    async def prompt_tokens_at_least(self, messages: Sequence[Message]) -> int:
        if self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return await prompt_tokens_at_least(self._loaded.tokenizer, messages, self.context_length)

    def announce(self) -> None:
        self._arrivals.announce()

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if not self.ready or self._batch_loop is None or self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return self._stream(self._batch_loop, self._loaded, prompt, params)

    async def _stream(
        self, batch_loop: BatchLoop, loaded: LoadedModel, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[GenerationEvent]:
        outputs: asyncio.Queue[Output] = asyncio.Queue()
        request = BatchRequest(
            prompt_ids=prompt.token_ids,
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed if params.seed is not None else random_seed(),
            ignore_eos=params.ignore_eos,
            top_k=params.top_k,
            min_p=params.min_p,
            min_new_tokens=params.min_new_tokens,
            logprobs=params.logprobs,
            grammar=constrained_row(params),
            sink=self._mailbox.sink(outputs),
        )
        self._arrivals.arrived()
        batch_loop.submit(request)
        detokenizer = Detokenizer(loaded.tokenizer.backend_tokenizer, params.stop)
        try:
            async with contextlib.aclosing(
                stream_outputs(
                    outputs,
                    lambda: self._next_output(batch_loop, outputs),
                    detokenizer,
                    prompt_tokens=len(prompt.token_ids),
                    max_new_tokens=params.max_new_tokens,
                    queue_s=lambda: (request.started_at or request.submitted_at) - request.submitted_at,
                    stop_generating=request.cancel,
                )
            ) as events:
                async for event in events:
                    yield event
        finally:
            # NOTE: also reached when the client left: free the row now. Cancelling a request
            # the loop has already dropped (finished, stop string) is harmless.
            request.cancel()

    @staticmethod
    async def _next_output(batch_loop: BatchLoop, outputs: asyncio.Queue[Output]) -> Output:
        """The next output; raises EngineError if the loop's thread is gone."""
        while True:
            try:
                async with asyncio.timeout(_HEALTH_CHECK_S):
                    return await outputs.get()
            except TimeoutError:
                if not batch_loop.alive:
                    raise EngineError("the batch loop stopped") from None

    async def close(self) -> None:
        if self._batch_loop is not None:
            batch_loop, self._batch_loop = self._batch_loop, None
            await asyncio.to_thread(batch_loop.stop)
        self._loaded = None
        self.status.state = EngineState.CLOSED
        self.status.reason = "engine closed"
