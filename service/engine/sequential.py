"""The one-at-a-time engine: ``model.generate()`` on one inference thread.

Why one thread, fed by a queue: generate() calls running in parallel threads
compete for the same cores (measured on a 2-core machine: 8 parallel generate
threads gave 45 tokens/s in total, one after another 80), and CUDA graphs keep
per-thread state. Requests wait in the queue in arrival order; each gets its own
streamer and its own asyncio queue, so text from two requests can never mix. Token ids
become text on the event loop (service.engine.outputs), overlapping the next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

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
from service.engine.grammar import constrained_row
from service.engine.loader import LoadedModel, load_model
from service.engine.outputs import LoopMailbox, Output, stream_outputs
from service.engine.prompt import prompt_tokens_at_least, render_chat, tokenize_text
from service.engine.sampling import SeededSampler, random_seed
from service.engine.streamer import Detokenizer, GenerationStopped, TokenIdStreamer
from service.engine.threads import awaitable_job
from service.settings import EngineSettings

logger = logging.getLogger(__name__)


@dataclass
class _QueueTiming:
    submitted_at: float
    queue_s: float = 0.0  # set on the inference thread when generate() begins


class InferenceThread:
    """Runs submitted jobs one after another on a single daemon thread."""

    def __init__(self, name: str = "inference") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job reports its own errors; this keeps the thread alive
                logger.exception("inference job failed")
            del job  # drop references to its tensors before blocking on the next one


class SequentialEngine(Engine):
    """Serves one generation at a time; later requests wait in arrival order."""

    def __init__(
        self, settings: EngineSettings, loader: Callable[[EngineSettings], LoadedModel] = load_model
    ):
        super().__init__()
        self.model_name = settings.model_name
        self._settings = settings
        self._loader = loader
        self._loaded: LoadedModel | None = None
        self._thread: InferenceThread | None = None
        self._mailbox = LoopMailbox()

    @property
    def context_length(self) -> int:
        if self._loaded is None:
            return 0
        if self._settings.static_cache and self._settings.static_cache_tokens:
            return min(self._loaded.context_length, self._settings.static_cache_tokens)
        return self._loaded.context_length

    async def _load(self) -> dict[str, str]:
        self._thread = InferenceThread()
        self._loaded = await self._run_on_thread(self._loader, self._settings)
        description = self._loaded.describe()
        if self._settings.static_cache:
            description["cache"] = f"static, {self.context_length} tokens"
        return description

    def _cache_kwargs(self) -> dict[str, Any]:
        """generate()'s cache options: one static cache for every request, so the compiled
        decode step (CUDA) is compiled once, in the warm-up, and never again."""
        if not self._settings.static_cache:
            return {}
        return {
            "cache_implementation": "static",
            "max_cache_len": self.context_length,
            "disable_compile": not self._settings.compile,
        }

    async def _warm_up(self) -> None:
        """One short generation, so the first request pays for no lazy initialisation."""
        if self._settings.warmup_tokens == 0:
            return
        prompt = await self.render_prompt([Message(role="user", content="Hello")])
        params = SamplingParams(max_new_tokens=self._settings.warmup_tokens, ignore_eos=True)
        async for _ in self._stream(prompt, params):
            pass

    async def render_prompt(
        self,
        messages: Sequence[Message],
        template: TemplateOptions = DEFAULT_TEMPLATE,
        tools: Sequence[dict[str, Any]] = (),
    ) -> Prompt:
        return await render_chat(self._require_loaded().tokenizer, messages, template, tools)

    async def tokenize(self, text: str) -> Prompt:
        return await tokenize_text(self._require_loaded().tokenizer, text)

    async def compile_json_schema(self, schema: str, text_allowed: bool = False) -> OutputGrammar:
        return await self._require_loaded().grammars.compile(schema, text_allowed)

    async def prompt_tokens_at_least(self, messages: Sequence[Message]) -> int:
        tokenizer = self._require_loaded().tokenizer
        return await prompt_tokens_at_least(tokenizer, messages, self.context_length)

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if not self.ready:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return self._stream(prompt, params)

    async def _stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        loaded = self._require_loaded()
        assert self._thread is not None
        outputs: asyncio.Queue[Output] = asyncio.Queue()
        sink = self._mailbox.sink(outputs)
        sampler = _sampler(params, len(prompt.token_ids))
        streamer = TokenIdStreamer(
            sink, sampler.logprobs_of if params.logprobs is not None and sampler else None
        )
        timing = _QueueTiming(submitted_at=time.perf_counter())
        generate_kwargs = _generate_kwargs(params, loaded, sampler)
        self._thread.submit(
            lambda: self._run_generation(loaded, prompt, generate_kwargs, streamer, sink, timing)
        )
        try:
            async with contextlib.aclosing(
                stream_outputs(
                    outputs,
                    outputs.get,
                    Detokenizer(loaded.tokenizer.backend_tokenizer, params.stop),
                    prompt_tokens=len(prompt.token_ids),
                    max_new_tokens=params.max_new_tokens,
                    queue_s=lambda: timing.queue_s,
                    stop_generating=streamer.cancel,
                )
            ) as events:
                async for event in events:
                    yield event
        finally:
            # NOTE: reached also when the consumer stops early (client gone, stop string): stop generating.
            streamer.cancel()

    def _run_generation(
        self,
        loaded: LoadedModel,
        prompt: Prompt,
        generate_kwargs: dict[str, Any],
        streamer: TokenIdStreamer,
        sink: Callable[..., None],
        timing: _QueueTiming,
    ) -> None:
        """Runs on the inference thread. Every outcome reaches ``sink``: no request hangs."""
        if streamer.cancelled:
            return  # the client left while waiting in the queue
        timing.queue_s = time.perf_counter() - timing.submitted_at
        try:
            input_ids = torch.tensor([prompt.token_ids], device=loaded.device)
            with torch.inference_mode(), contextlib.suppress(GenerationStopped):
                loaded.model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    streamer=streamer,
                    **generate_kwargs,
                    **self._cache_kwargs(),
                )
        except Exception as exc:
            logger.exception("generate() failed")
            sink([], True, exc)
            return
        sink([], True)

    async def close(self) -> None:
        if self._thread is not None:
            # A thread still loading the model is not waited for: it is a daemon, and the process
            # may be exiting (SIGTERM during the load).
            timeout_s = 5.0 if self.status.state is EngineState.READY else 0.0
            await asyncio.to_thread(self._thread.stop, timeout_s)
            self._thread = None
        self._loaded = None
        self.status.state = EngineState.CLOSED
        self.status.reason = "engine closed"

    async def _run_on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the inference thread (CUDA state stays on one thread) and await it."""
        assert self._thread is not None
        job, result = awaitable_job(fn, *args)
        self._thread.submit(job)
        return await result

    def _require_loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise EngineError(f"engine is not ready: {self.status.reason}")
        return self._loaded


def _sampler(params: SamplingParams, prompt_length: int) -> SeededSampler | None:
    """generate()'s sampler: none for greedy decoding without log-probabilities (one Python call
    less per token). Sampling is argmax over seeded Gumbel-perturbed scores (service.engine.sampling),
    so generate() itself always decodes greedily."""
    if params.temperature == 0 and params.logprobs is None and params.grammar is None:
        return None
    return SeededSampler(
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed if params.seed is not None else random_seed(),
        prompt_length=prompt_length,
        top_k=params.top_k,
        min_p=params.min_p,
        logprobs=params.logprobs,
        grammar=constrained_row(params),
    )


def _generate_kwargs(
    params: SamplingParams, loaded: LoadedModel, sampler: SeededSampler | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        # Every EOS the model declares ends the completion, as in the batched engine.
        "eos_token_id": list(loaded.eos_token_ids),
        "pad_token_id": loaded.pad_token_id,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    if sampler is not None:
        kwargs["logits_processor"] = LogitsProcessorList([sampler])
    if params.ignore_eos:
        # The EOS tokens are masked until max_new_tokens: the length is exact.
        kwargs["min_new_tokens"] = params.max_new_tokens
    elif params.min_new_tokens:
        kwargs["min_new_tokens"] = params.min_new_tokens
    return kwargs
