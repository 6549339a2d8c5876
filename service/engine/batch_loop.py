"""Our continuous batching: one decode step for every running request, new ones joining between steps.

Why not transformers' ContinuousBatchingManager (README: Engines): its bookkeeping per
step costs more than the model on small batches (474 against 1006 tokens/s in-process).

The layout: each running request is one row of a left-padded batch. All rows' newest
token sits at the same index of one ``DynamicCache``; the padding on the left of a
shorter row is masked out by the attention mask, and every row has its own positions.
New requests are prefilled (service.engine.prefill: short prompts together, long ones a
chunk per decode step); their cache rows are padded to
the batch's length (or the batch to theirs) and joined to it. A finished or cancelled
request's row is dropped, and padding columns no row needs any more are cut. Sampling
is per row and batch-independent (service.engine.sampling).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import DynamicCache

from service.engine.prefill import ChunkedPrefill, Prefilled, length_groups, prefill_together
from service.engine.sampling import apply_sampling, noise_key

logger = logging.getLogger(__name__)

# Called on the loop's thread for each request: (new token ids, finished, error). Must not block.
TokenSink = Callable[[list[int], bool, BaseException | None], None]


@dataclass(eq=False)
class BatchRequest:
    """One generation; ``cancelled`` may be set from any thread and is honoured before the next step."""

    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop_token_id: int | None  # None: generate exactly max_new_tokens (ignore_eos)
    sink: TokenSink
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None  # its prefill began
    cancelled: bool = False
    generated: int = 0

    def noise_key(self) -> int:
        """The key of the noise for the next token; 0 (no noise) for greedy decoding."""
        return 0 if self.temperature == 0 else noise_key(self.seed, self.generated)


class _Batch:
    """The running rows and their shared, left-padded KV cache."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: list[BatchRequest] = []
        self.cache: DynamicCache | None = None
        self.attention_mask = torch.zeros(0, 0, dtype=torch.long)
        self.next_positions = torch.zeros(0, dtype=torch.long)  # per row: the position of its next token
        self.next_tokens = torch.zeros(0, 1, dtype=torch.long)

    def join(
        self,
        requests: list[BatchRequest],
        cache: DynamicCache,
        attention_mask: torch.Tensor,
        tokens: torch.Tensor,
    ) -> None:
        """Add prefilled rows: their cache, padding mask and first sampled tokens."""
        positions = attention_mask.sum(-1)
        if self.cache is None:
            self.cache, self.attention_mask = cache, attention_mask
            self.next_positions, self.next_tokens = positions, tokens.unsqueeze(-1)
        else:
            # Everything is built first and assigned after: a failure here (out of memory on a
            # long prompt) fails the joining requests only, not the running batch.
            ours, theirs = self.attention_mask.size(1), attention_mask.size(1)
            mine_pad, new_pad = max(0, theirs - ours), max(0, ours - theirs)
            joined = [
                (
                    torch.cat([_padded(mine.keys, mine_pad), _padded(new.keys, new_pad)]),
                    torch.cat([_padded(mine.values, mine_pad), _padded(new.values, new_pad)]),
                )
                for mine, new in zip(self.cache.layers, cache.layers, strict=True)
            ]
            mask = torch.cat([F.pad(self.attention_mask, (mine_pad, 0)), F.pad(attention_mask, (new_pad, 0))])
            next_positions = torch.cat([self.next_positions, positions])
            next_tokens = torch.cat([self.next_tokens, tokens.unsqueeze(-1)])
            for layer, (keys, values) in zip(self.cache.layers, joined, strict=True):
                layer.keys, layer.values = keys, values
            self.attention_mask, self.next_positions, self.next_tokens = mask, next_positions, next_tokens
        self.requests.extend(requests)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, then cut the padding columns no remaining row needs."""
        if len(rows) == len(self.requests):
            return
        if not rows:
            self.reset()
            return
        assert self.cache is not None
        index = torch.tensor(rows, device=self.attention_mask.device)
        self.cache.batch_select_indices(index)
        self.attention_mask = self.attention_mask[index]
        self.next_positions = self.next_positions[index]
        self.next_tokens = self.next_tokens[index]
        self.requests = [self.requests[row] for row in rows]
        first = int(self.attention_mask.any(dim=0).int().argmax())  # the first column in use
        if first > 0:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]
            self.attention_mask = self.attention_mask[:, first:]


def _padded(states: torch.Tensor, columns: int) -> torch.Tensor:
    """``states`` [batch, heads, length, dim] with ``columns`` empty positions on the left."""
    return F.pad(states, (0, 0, columns, 0)) if columns > 0 else states


class BatchLoop:
    """Runs the batch on one thread; :meth:`submit` from any thread.

    ``stop_token_ids`` are masked out for requests that ignore them (``stop_token_id``
    None), as ``min_new_tokens`` does in ``generate()``, so that both engines give the
    same text for the same seed.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        max_batch_size: int,
        pad_token_id: int,
        stop_token_ids: list[int],
        prefill_chunk_tokens: int = 512,
    ) -> None:
        self._model = model
        self._max_batch_size = max_batch_size
        self._prefill_chunk_tokens = prefill_chunk_tokens
        self._prefilling: list[ChunkedPrefill] = []  # long prompts, a chunk per iteration
        self._pad_token_id = pad_token_id
        self._stop_token_ids = stop_token_ids
        self._device = next(model.parameters()).device
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
        batch = _Batch()
        while self._take_new(block=not batch.requests and not self._prefilling):
            # A failed forward pass fails the requests in it; the loop carries on with the next.
            with torch.inference_mode():
                self._prefill_new(batch)
                self._prefill_next_chunk(batch)
                if batch.requests:
                    try:
                        self._step(batch)
                    except Exception as exc:
                        logger.exception("decode step failed")
                        _fail(batch.requests, exc)
                        batch.reset()

    def _prefill_new(self, batch: _Batch) -> None:
        """Join the short new prompts now, grouped by length; queue the long ones for chunks."""
        short = []
        for request in self._joining(len(batch.requests) + len(self._prefilling)):
            if len(request.prompt_ids) > self._prefill_chunk_tokens:
                self._prefilling.append(ChunkedPrefill(request, self._prefill_chunk_tokens))
            else:
                short.append(request)
        for group in length_groups(short):
            self._admit(batch, group, partial(prefill_together, self._model, group, self._pad_token_id))

    def _prefill_next_chunk(self, batch: _Batch) -> None:
        """One chunk of the oldest long prompt: running streams wait for a chunk, not a whole prompt."""
        self._prefilling = [prefill for prefill in self._prefilling if not prefill.request.cancelled]
        if not self._prefilling:
            return
        prefill = self._prefilling[0]
        self._admit(batch, [prefill.request], partial(prefill.advance, self._model))
        if prefill.done or prefill.request.cancelled:
            self._prefilling.pop(0)

    def _take_new(self, block: bool) -> bool:
        """Move submitted requests to the waiting list (waiting for one if ``block``); False once stopped."""
        while True:
            try:
                request = self._pending.get(block=block and not self._waiting)
            except queue.Empty:
                return True
            if request is None:
                return False
            self._waiting.append(request)
            block = False

    def _joining(self, running: int) -> list[BatchRequest]:
        """The waiting requests that fit beside ``running`` rows, in arrival order."""
        waiting = [request for request in self._waiting if not request.cancelled]
        room = self._max_batch_size - running
        joining, self._waiting = waiting[:room], waiting[room:]
        return joining

    def _admit(
        self, batch: _Batch, joining: list[BatchRequest], prefill: Callable[[], Prefilled | None]
    ) -> None:
        """Run ``prefill`` for ``joining``; once it is complete, sample their first tokens and join them."""
        try:
            prefilled = prefill()
            if prefilled is None:
                return  # more chunks to go
            tokens = self._sample(joining, prefilled.logits)
            batch.join(joining, prefilled.cache, prefilled.attention_mask, tokens)
        except Exception as exc:
            logger.exception("prefill failed")
            _fail(joining, exc)
            for request in joining:
                request.cancelled = True  # a chunked prefill is dropped, not retried
            return
        self._deliver(batch, tokens.tolist())

    def _step(self, batch: _Batch) -> None:
        """One decode step for every row."""
        batch.attention_mask = F.pad(batch.attention_mask, (0, 1), value=1)
        logits = self._model(
            input_ids=batch.next_tokens,
            attention_mask=batch.attention_mask,
            position_ids=batch.next_positions.unsqueeze(-1),
            past_key_values=batch.cache,
            use_cache=True,
        ).logits[:, -1, :]
        batch.next_positions = batch.next_positions + 1
        tokens = self._sample(batch.requests, logits)
        batch.next_tokens = tokens.unsqueeze(-1)
        self._deliver(batch, tokens.tolist())

    def _sample(self, requests: list[BatchRequest], logits: torch.Tensor) -> torch.Tensor:
        scores = logits.float()
        ignoring = [row for row, request in enumerate(requests) if request.stop_token_id is None]
        if ignoring and self._stop_token_ids:
            scores[torch.tensor(ignoring).unsqueeze(-1), torch.tensor(self._stop_token_ids)] = float("-inf")
        if any(request.temperature > 0 for request in requests):
            device = scores.device
            scores = apply_sampling(
                scores,
                torch.tensor([request.temperature for request in requests], device=device),
                torch.tensor([request.top_p for request in requests], device=device),
                torch.tensor([request.noise_key() for request in requests], device=device),
            )
        return scores.argmax(dim=-1)

    def _deliver(self, batch: _Batch, token_ids: list[int]) -> None:
        """Hand the last ``len(token_ids)`` rows their tokens; drop the finished and cancelled rows."""
        first = len(batch.requests) - len(token_ids)
        keep = list(range(first))
        for row, token_id in enumerate(token_ids, start=first):
            request = batch.requests[row]
            request.generated += 1
            finished = request.generated >= request.max_new_tokens or token_id == request.stop_token_id
            _tell(request, [token_id], finished, None)
            if not finished and not request.cancelled:
                keep.append(row)
        batch.keep(keep)


def _fail(requests: list[BatchRequest], error: Exception) -> None:
    for request in requests:
        if not request.cancelled:
            _tell(request, [], True, error)


def _tell(request: BatchRequest, token_ids: list[int], finished: bool, error: BaseException | None) -> None:
    """Hand a request its output; a sink that fails (its event loop closed) cancels the request
    instead of killing the loop's thread."""
    try:
        request.sink(token_ids, finished, error)
    except Exception:
        logger.exception("a request's sink failed: cancelling it")
        request.cancelled = True
