"""Our continuous batching: one decode step for every running request, new ones joining between steps.

Why not transformers' ContinuousBatchingManager (docs/architecture.md: Engines): its bookkeeping per
step costs more than the model on small batches (474 against 1006 tokens/s in-process).

Each iteration: new prompts are prefilled (service.engine.prefill: short ones together
up to ``prefill_chunk_tokens``, long ones a chunk at a time) and join the running rows
(service.engine.running_batch), then one decode step runs for every row. Beside running rows,
where our forward runs the step (service.engine.llama_forward), a pass of new short prompts
goes through the step itself, as vLLM's scheduler mixes prefill and decode tokens in one
batch: the linear layers read their weights once for both (in-process, SmolLM2-135M, 2
threads: 8 rows and a 41-token prompt 131 -> 100 ms), and the next passes go with the next
steps. Sampling is per row and batch-independent (service.engine.row_sampling,
service.engine.sampling).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import DynamicCache

from service.engine.batch_request import BatchRequest
from service.engine.llama_forward import LlamaForward
from service.engine.logprobs import SampledLogprobs
from service.engine.prefill import ChunkedPrefill, Prefilled, prefill_passes, prefill_together
from service.engine.row_sampling import sample_rows
from service.engine.running_batch import RunningBatch

logger = logging.getLogger(__name__)

# An idle loop gathers a burst of arrivals for at most this many gaps (arrival_gap_s) in all.
MAX_GATHER_GAPS = 10


class BatchLoop:
    """Runs the batch on one thread; :meth:`submit` from any thread.

    Any of ``stop_token_ids`` (the model's EOS tokens) ends a request; for requests that
    ignore them they are masked out, as ``min_new_tokens`` does in ``generate()``, so that
    both engines give the same text for the same seed.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        max_batch_size: int,
        pad_token_id: int,
        stop_token_ids: Sequence[int],
        prefill_chunk_tokens: int = 512,
        prefill_pass_tokens: int = 256,
        arrival_gap_s: float = 0.0,
        on_their_way: Callable[[], int] | None = None,
    ) -> None:
        """``on_their_way``: how many requests are on their way (service.engine.arrivals); an
        idle loop gathers arrivals only while there are some. None: it gathers every time."""
        self._model = model
        self._arrival_gap_s = arrival_gap_s
        self._on_their_way = on_their_way
        self._max_batch_size = max_batch_size
        self._prefill_chunk_tokens = prefill_chunk_tokens
        self._prefill_pass_tokens = prefill_pass_tokens
        self._prefilling: list[ChunkedPrefill] = []  # long prompts, a chunk per iteration
        self._pad_token_id = pad_token_id
        self._stop_token_ids = frozenset(stop_token_ids)
        self._device = next(model.parameters()).device
        # Decode steps and unpadded prefills in fewer ops than the model's own forward where it is
        # a Llama-architecture model on packed weights (service.engine.llama_forward).
        self._forward = LlamaForward.for_model(model) if self._device.type == "cpu" else None
        self._pending: queue.SimpleQueue[BatchRequest | None] = queue.SimpleQueue()
        self._waiting: list[BatchRequest] = []
        self._thread = threading.Thread(target=self._run, name="batch-loop", daemon=True)
        self._thread.start()

    def submit(self, request: BatchRequest) -> None:
        self._pending.put(request)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._pending.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        batch = RunningBatch(self._max_batch_size)
        while self._take_new(block=not batch.requests and not self._prefilling):
            with torch.inference_mode():
                try:
                    self._iterate(batch)
                except Exception as exc:  # not a forward pass (those fail only their requests): fail all
                    logger.exception("batch loop iteration failed")
                    started = batch.requests + [prefill.request for prefill in self._prefilling]
                    _fail(started, exc)
                    batch.reset()
                    self._prefilling = []

    def _iterate(self, batch: RunningBatch) -> None:
        """Prefill what fits, then one decode step, carrying a pass of new prompts where the
        forward can. A failed forward pass fails the requests in it."""
        carried = self._prefill_new(batch)
        self._prefill_next_chunk(batch)
        if batch.requests:
            try:
                self._step(batch, carried)
            except Exception as exc:
                logger.exception("decode step failed")
                _fail(batch.requests + carried, exc)
                batch.reset()

    def _prefill_new(self, batch: RunningBatch) -> list[BatchRequest]:
        """Join new short prompts, grouped by length, in passes of ``prefill_pass_tokens``, up to
        ``prefill_chunk_tokens`` (counted as the pass computes them: prefill_passes) before the
        next decode step; queue the long ones for chunks. Beside running rows, where the forward
        carries prompts in a decode step (LlamaForward.step_carrying), the first pass left is
        returned for the step to carry and the rest wait for the next steps."""
        short = []
        for request in self._joining(len(batch.requests) + len(self._prefilling)):
            if len(request.prompt_ids) > self._prefill_chunk_tokens:
                self._prefilling.append(ChunkedPrefill(request, self._prefill_chunk_tokens))
            else:
                short.append(request)
        packed, idle = self._forward is not None, not batch.requests
        passes, deferred = prefill_passes(
            short, self._prefill_chunk_tokens, self._prefill_pass_tokens, packed, split_first=idle
        )
        carried: list[BatchRequest] = []
        try:
            while passes:
                joining = [request for request in passes.pop(0) if not request.cancelled]  # in earlier passes
                if (
                    joining
                    and batch.requests
                    and self._forward
                    and self._forward.carries_prompts(batch.cache)
                ):
                    carried = joining
                    break
                if joining:
                    self._admit(batch, joining, partial(self._prefill_pass, joining))
        finally:
            # The rest go first at the next step, in arrival order, also the passes not run when
            # this iteration failed (_run fails the requests it had started only).
            later = deferred + [request for prefill_pass in passes for request in prefill_pass]
            self._waiting = sorted(later, key=lambda request: request.submitted_at) + self._waiting
        return carried

    def _prefill_pass(self, joining: list[BatchRequest]) -> Prefilled:
        return prefill_together(self._model, joining, self._pad_token_id, self._forward)

    def _prefill_next_chunk(self, batch: RunningBatch) -> None:
        """One chunk of the oldest long prompt: the running streams wait for a chunk, not a whole
        prompt (at most two chunks' worth of prefill between decode steps, with _prefill_new's)."""
        self._prefilling = [prefill for prefill in self._prefilling if not prefill.request.cancelled]
        if not self._prefilling:
            return
        prefill = self._prefilling[0]
        self._admit(batch, [prefill.request], partial(prefill.advance, self._model))
        if prefill.done or prefill.request.cancelled:  # cancelled here also means it failed
            self._prefilling.pop(0)

    def _take_new(self, block: bool) -> bool:
        """Move submitted requests to the waiting list; False once stopped. ``block``: the loop is
        idle, so wait for a request, then, while more are on their way, for them arriving within
        ``arrival_gap_s`` of each other: clients that send at once arrive a few ms apart (8: within
        6 ms), and the first prefilled alone makes the rest wait for it (docs/performance.md: A
        burst reaching an idle engine)."""
        block = block and not self._waiting
        timeout: float | None = None  # the first request of an idle loop: as long as it takes
        gather_until = 0.0
        while True:
            try:
                request = self._pending.get(timeout=timeout) if block else self._pending.get_nowait()
            except queue.Empty:
                return True
            if request is None:
                return False
            self._waiting.append(request)
            now = time.monotonic()
            if timeout is None:
                gather_until = now + MAX_GATHER_GAPS * self._arrival_gap_s
            timeout = min(self._arrival_gap_s, gather_until - now)
            block = block and timeout > 0 and len(self._waiting) < self._max_batch_size
            block = block and (self._on_their_way is None or self._on_their_way() > 0)

    def _joining(self, running: int) -> list[BatchRequest]:
        """The waiting requests that fit beside ``running`` rows, in arrival order."""
        waiting = [request for request in self._waiting if not request.cancelled]
        room = self._max_batch_size - running
        joining, self._waiting = waiting[:room], waiting[room:]
        return joining

    def _admit(
        self, batch: RunningBatch, joining: list[BatchRequest], prefill: Callable[[], Prefilled | None]
    ) -> None:
        """Run ``prefill`` for ``joining``; once it is complete, sample and hand out their first
        tokens, then join the rows that go on (the join copies their cache into the slab, ~2 ms
        at one stream, and their first tokens need not wait for it)."""
        try:
            prefilled = prefill()
            if prefilled is None:
                return  # more chunks to go
            tokens, logprobs = sample_rows(joining, prefilled.logits, self._stop_token_ids)
        except Exception as exc:
            _drop(joining, exc)
            return
        going_on = self._tell_rows(joining, tokens.tolist(), logprobs)
        if not any(going_on):
            return  # all done at their first token (max_tokens 1, EOS): nothing to join
        running = len(batch.requests)
        try:
            batch.join(joining, prefilled.cache, prefilled.attention_mask, tokens)
        except Exception as exc:
            _drop([request for request, on in zip(joining, going_on, strict=True) if on], exc)
            return
        joined = [running + index for index, on in enumerate(going_on) if on]
        batch.keep(list(range(running)) + joined)

    def _step(self, batch: RunningBatch, carried: list[BatchRequest]) -> None:
        """One decode step for every row, carrying the prefill of ``carried`` (new requests)."""
        batch.attention_mask = F.pad(batch.attention_mask, (0, 1), value=1)
        positions = batch.next_positions.unsqueeze(-1)
        assert batch.cache is not None, "a running batch has a cache"
        prefilled: Prefilled | None = None
        if carried:
            assert self._forward is not None, "only our forward carries prompts"
            started = time.perf_counter()
            for request in carried:
                request.started_at = started
            prompt_cache = DynamicCache()
            logits, prompt_mask, prompt_logits = self._forward.step_carrying(
                batch.next_tokens,
                batch.attention_mask,
                positions,
                batch.cache,
                [request.prompt_ids for request in carried],
                prompt_cache,
            )
            prefilled = Prefilled(prompt_cache, prompt_mask, prompt_logits)
        elif self._forward is not None:
            logits = self._forward(batch.next_tokens, batch.attention_mask, positions, batch.cache)
        else:
            logits = transformers_decode_logits(self._model, batch)
        batch.next_positions = batch.next_positions + 1
        tokens, logprobs = sample_rows(batch.requests, logits, self._stop_token_ids)
        batch.next_tokens = tokens.unsqueeze(-1)
        going_on = self._tell_rows(batch.requests, tokens.tolist(), logprobs)
        batch.keep([row for row, on in enumerate(going_on) if on])
        if prefilled is not None:
            self._admit(batch, carried, lambda: prefilled)

    def _tell_rows(
        self,
        requests: list[BatchRequest],
        token_ids: list[int],
        logprobs: list[SampledLogprobs | None] | None,
    ) -> list[bool]:
        """Hand each request its token; whether it goes on (not finished, not cancelled)."""
        going_on = []
        for index, (request, token_id) in enumerate(zip(requests, token_ids, strict=True)):
            request.generated += 1
            stopped = token_id in self._stop_token_ids and not request.ignore_eos
            finished = stopped or request.generated >= request.max_new_tokens
            found = logprobs[index] if logprobs else None
            _tell(request, [token_id], finished, None, [found] if found else None)
            going_on.append(not finished and not request.cancelled)
        return going_on


def transformers_decode_logits(model: torch.nn.Module, batch: RunningBatch) -> torch.Tensor:
    """A decode step through the model's own (transformers') forward: every row's next-token logits."""
    return model(
        input_ids=batch.next_tokens,
        attention_mask=batch.attention_mask,
        position_ids=batch.next_positions.unsqueeze(-1),
        past_key_values=batch.cache,
        use_cache=True,
    ).logits[:, -1, :]


def _drop(requests: list[BatchRequest], error: Exception) -> None:
    """A failed prefill or join: fail its requests; a chunked prefill is dropped, not retried."""
    logger.exception("prefill or join failed")
    _fail(requests, error)
    for request in requests:
        request.cancelled = True


def _fail(requests: list[BatchRequest], error: Exception) -> None:
    for request in requests:
        if not request.cancelled:
            _tell(request, [], True, error, None)


def _tell(
    request: BatchRequest,
    token_ids: list[int],
    finished: bool,
    error: BaseException | None,
    logprobs: list[SampledLogprobs] | None,
) -> None:
    """Hand a request its output; a sink that fails (its event loop closed) cancels the request
    instead of killing the loop's thread."""
    try:
        request.sink(token_ids, finished, error, logprobs)
    except Exception:
        logger.exception("a request's sink failed: cancelling it")
        request.cancelled = True
