"""The continuous-batching engine: transformers' ContinuousBatchingManager behind the Engine interface.

Requests join and leave the running batch at every decode step, so throughput
grows with concurrency instead of staying at one stream's. Results reach each
request through a per-request callback on the event loop (one dispatcher, the
manager's OutputRouter), not by polling: polling per request was measured 2-3x
slower. Sampling is per request and batch-independent (service.engine.sampling).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from tokenizers.decoders import DecodeStream
from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

from service.engine.base import (
    Engine,
    EngineError,
    EngineState,
    GenerationEvent,
    GenerationFinished,
    Message,
    Prompt,
    SamplingParams,
    TextDelta,
)
from service.engine.batched_sampling import install_sampling_processors, sampling_kwargs
from service.engine.loader import LoadedModel, load_model
from service.engine.prompt import render_chat
from service.engine.sampling import random_seed
from service.engine.streamer import StopStringMatcher
from service.settings import Settings

logger = logging.getLogger(__name__)

# Measured on a 2-core CPU: the library's auto-sized cache ran at 40 tokens/s with
# 6.6 GB; a cache sized for the work ran 30x faster. On CPU we size it ourselves.
_CPU_PAGE_SIZE = 64
_CPU_MAX_BATCH_TOKENS = 256
# Prompt tokens assumed per request when sizing the cache (longer ones still run:
# the manager evicts and re-prefills).
_TYPICAL_PROMPT_TOKENS = 512
# How often a waiting request checks that the batching loop is still alive.
_HEALTH_CHECK_S = 2.0


class BatchedEngine(Engine):
    """Serves up to ``max_concurrency`` generations at once in one continuous batch."""

    def __init__(self, settings: Settings, loader: Callable[[Settings], LoadedModel] = load_model):
        super().__init__()
        self.model_name = settings.model_name
        self.max_concurrency = settings.generation_slots
        self._settings = settings
        self._loader = loader
        self._loaded: LoadedModel | None = None
        self._manager: Any = None
        self._restart_lock = asyncio.Lock()

    @property
    def context_length(self) -> int:
        return self._loaded.context_length if self._loaded else 0

    async def _load_and_warm_up(self) -> dict[str, str]:
        self._loaded = await asyncio.to_thread(self._loader, self._settings)
        self._manager = await asyncio.to_thread(self._start_manager, self._loaded)
        self.status.reason = "warming up"
        await self._warm_up(self._manager, self._loaded)
        return {**self._loaded.describe(), "engine": "batched"}

    def _start_manager(self, loaded: LoadedModel) -> Any:
        tokenizer = loaded.tokenizer
        generation_config = GenerationConfig(
            max_new_tokens=self._settings.max_new_tokens,
            do_sample=False,  # argmax over the per-request sampled scores
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        )
        manager = loaded.model.init_continuous_batching(
            generation_config=generation_config,
            continuous_batching_config=self._cache_config(loaded),
        )
        install_sampling_processors(manager)
        manager.start()
        return manager

    def _cache_config(self, loaded: LoadedModel) -> ContinuousBatchingConfig:
        if loaded.device.type == "cuda":
            return ContinuousBatchingConfig()  # sized from free GPU memory by the library
        tokens_per_request = min(
            loaded.context_length, _TYPICAL_PROMPT_TOKENS + self._settings.max_new_tokens
        )
        num_blocks = math.ceil(self.max_concurrency * tokens_per_request / _CPU_PAGE_SIZE)
        logger.info(
            "paged cache: %d blocks of %d tokens, %d batch tokens",
            num_blocks,
            _CPU_PAGE_SIZE,
            _CPU_MAX_BATCH_TOKENS,
        )
        return ContinuousBatchingConfig(
            page_size=_CPU_PAGE_SIZE,
            num_blocks=num_blocks,
            max_batch_tokens=_CPU_MAX_BATCH_TOKENS,
            max_requests_per_batch=self.max_concurrency,
        )

    async def _warm_up(self, manager: Any, loaded: LoadedModel) -> None:
        """One short generation, so the first request pays for no lazy initialisation."""
        if self._settings.warmup_tokens == 0:
            return
        prompt = await render_chat(loaded.tokenizer, [Message(role="user", content="Hello")])
        params = SamplingParams(max_new_tokens=self._settings.warmup_tokens, ignore_eos=True)
        async for _ in self._stream(manager, loaded, prompt, params):
            pass

    async def render_prompt(self, messages: Sequence[Message]) -> Prompt:
        if self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return await render_chat(self._loaded.tokenizer, messages)

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if not self.ready or self._manager is None or self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return self._stream(self._manager, self._loaded, prompt, params)

    async def _stream(
        self, manager: Any, loaded: LoadedModel, prompt: Prompt, params: SamplingParams
    ) -> AsyncIterator[GenerationEvent]:
        request_id = uuid.uuid4().hex
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        manager.register_result_handler(request_id, outputs.put_nowait)
        seed = params.seed if params.seed is not None else random_seed()
        added = manager.add_request(
            prompt.token_ids,
            request_id=request_id,
            max_new_tokens=params.max_new_tokens,
            streaming=True,
            # -1 is never generated: the length is exactly max_new_tokens.
            eos_token_id=-1 if params.ignore_eos else loaded.tokenizer.eos_token_id,
            **sampling_kwargs(params.temperature, params.top_p, seed),
        )
        if added is None:  # the manager refuses work once its loop has died
            _forget_result_handler(manager, request_id)
            await self._restart_if_dead(manager)
            raise EngineError("the batching loop was down; it has been restarted: retry the request")
        backend = loaded.tokenizer.backend_tokenizer
        decoder = DecodeStream(skip_special_tokens=True)
        stop_matcher = StopStringMatcher(params.stop)
        seen = 0
        finished = False
        try:
            while True:
                output = await self._next_output(manager, outputs)
                while not outputs.empty():  # a slow reader gets what piled up at once
                    output = outputs.get_nowait()
                if output.error is not None:
                    await self._restart_if_dead(manager)
                    raise EngineError(f"generation failed: {output.error}")
                text = ""
                stop_matched = False
                for token_id in output.generated_tokens[seen:]:
                    seen += 1
                    piece = decoder.step(backend, token_id)
                    if piece:
                        emitted, stop_matched = stop_matcher.feed(piece)
                        text += emitted
                        if stop_matched:
                            break
                done = stop_matched or output.is_finished()
                if done and not stop_matched:
                    text += stop_matcher.flush()
                if text:
                    yield TextDelta(text, seen)
                if done:
                    finished = output.is_finished()
                    length_reached = seen >= params.max_new_tokens and not stop_matched
                    start, _ = output.lifespan
                    yield GenerationFinished(
                        finish_reason="length" if length_reached else "stop",
                        prompt_tokens=len(prompt.token_ids),
                        completion_tokens=seen,
                        queue_s=max(0.0, start - output.created_time) if start > 0 else 0.0,
                    )
                    return
        finally:
            if not finished:
                # NOTE: also reached when the client left: free its place in the batch now.
                manager.cancel_request(request_id)
                _forget_result_handler(manager, request_id)

    async def _next_output(self, manager: Any, outputs: asyncio.Queue[Any]) -> Any:
        """The next output; raises EngineError if the batching loop died without delivering one."""
        while True:
            try:
                async with asyncio.timeout(_HEALTH_CHECK_S):
                    return await outputs.get()
            except TimeoutError:
                if manager.is_running() and manager.background_thread_status.fatal_error is None:
                    continue  # a long prefill or a full batch: keep waiting
                await self._restart_if_dead(manager)
                raise EngineError("the batching loop stopped; it has been restarted") from None

    async def _restart_if_dead(self, manager: Any) -> None:
        """A failure inside a forward pass ends the manager's loop: start a new one (once)."""
        if manager.background_thread_status.fatal_error is None and manager.is_running():
            return
        async with self._restart_lock:
            if self._manager is not manager or self._loaded is None:
                return  # already restarted (or closing)
            logger.error(
                "continuous batching loop died (%s): restarting it",
                manager.background_thread_status.fatal_error,
            )
            await asyncio.to_thread(manager.stop, block=True, timeout=5)
            self._manager = await asyncio.to_thread(self._start_manager, self._loaded)

    async def close(self) -> None:
        if self._manager is not None:
            manager, self._manager = self._manager, None
            await asyncio.to_thread(manager.stop, block=True, timeout=10)
        self._loaded = None
        self.status.state = EngineState.CLOSED
        self.status.reason = "engine closed"


def _forget_result_handler(manager: Any, request_id: str) -> None:
    # The manager drops a handler when its request finishes; a cancelled request
    # never finishes, so its handler is dropped here.
    router = manager.output_router
    with router._lock:
        router.result_handlers.pop(request_id, None)
