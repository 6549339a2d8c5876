"""Prefill for the batch loop: short prompts together, long ones a chunk per decode step.

Prompts that arrive together are prefilled together, left-padded to the longest; a
2,000-token prompt arriving with seven 20-token ones would make that pass 8 x 2,000 tokens
for 2,140 useful ones. So prompts are grouped by length, each group wasting at most a
quarter of its tokens (or a few tokens a row) on padding, shortest first.

A group runs in passes of at most ``pass_tokens``, back to back (beside running streams, one a
decode step: service.engine.batch_loop), and each pass's first tokens go out as it ends. A
pass of 185 tokens costs about what a pass of 370 does per token on a CPU (GEMMs that large
are bound by arithmetic either way), so splitting a burst in two sends half its first tokens
in half the time for little more in all: 8 prompts at once, 2 threads, SmolLM2-135M: five
first tokens at ~400 ms and three at ~670 instead of all eight at ~630 (docs/performance.md: A
burst in passes). Reaching an idle loop (no stream running, so no one else waits for a pass
more), the first pass takes at most three quarters of the burst's tokens: four prompts at
once, one pass, sent all four first tokens at ~300 ms; three of them now go at ~240 and the
last at ~350. A pass costs ~40 ms plus ~1.4 ms a token here, so the mean first-token time is
about flat for a first pass between half and three quarters of the burst, and three quarters
sends most of it first (its median).

A long prompt prefilled in one pass also stops every running stream for that long (its
inter-token latency jumps by the whole prefill). Prompts longer than ``chunk_tokens``
are prefilled into a cache of their own, one chunk per iteration of the loop, between
decode steps of the running batch, and join it when their last chunk is in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from service.engine.batch_request import BatchRequest
from service.engine.llama_forward import LlamaForward

# Padding a group may carry: a quarter of its tokens, or this many tokens a row.
_PADDING_SHARE = 0.25
_PADDING_PER_ROW = 16
# The first pass's share of a burst's tokens at most (module docstring).
_FIRST_PASS_SHARE = 0.75


@dataclass
class Prefilled:
    """Rows ready to join the batch: their left-padded cache and mask, and the last position's logits."""

    cache: DynamicCache
    attention_mask: torch.Tensor
    logits: torch.Tensor


def length_groups(requests: Sequence[BatchRequest]) -> list[list[BatchRequest]]:
    """``requests`` grouped by prompt length so that padding to each group's longest wastes little."""
    groups: list[list[BatchRequest]] = []
    tokens = 0
    for request in sorted(requests, key=lambda r: len(r.prompt_ids)):
        length = len(request.prompt_ids)  # the longest so far: the group pads to it
        if groups:
            rows = len(groups[-1]) + 1
            padding = rows * length - (tokens + length)
            if padding <= max(_PADDING_SHARE * (tokens + length), _PADDING_PER_ROW * rows):
                groups[-1].append(request)
                tokens += length
                continue
        groups.append([request])
        tokens = length
    return groups


def prefill_passes(
    requests: Sequence[BatchRequest],
    budget_tokens: int,
    pass_tokens: int,
    packed: bool = False,
    split_first: bool = False,
) -> tuple[list[list[BatchRequest]], list[BatchRequest]]:
    """The forward passes that prefill ``requests`` (similar lengths, shortest first, at most
    ``pass_tokens`` each and ``budget_tokens`` in all, one prompt a pass at least), and the
    requests left over for the next decode step. Tokens count as the pass computes them:
    ``packed`` (LlamaForward's prefill) each prompt's own, else the group's longest, padding
    included. A prompt is at most a budget, so the first always fits. ``split_first``: no stream
    is running, so the first pass takes at most three quarters of all the passes' tokens (module
    docstring); beside running streams a pass more would hold them all up for its overhead."""
    fitting: list[list[tuple[BatchRequest, int]]] = []  # per length group: requests and their tokens
    deferred: list[BatchRequest] = []
    for group in length_groups(requests):
        longest = max(len(request.prompt_ids) for request in group)
        fitting.append([])
        for request in group:
            tokens = len(request.prompt_ids) if packed else longest
            if tokens > budget_tokens:
                deferred.append(request)
                continue
            fitting[-1].append((request, tokens))
            budget_tokens -= tokens
    total = sum(tokens for group in fitting for _, tokens in group)
    limit = min(pass_tokens, math.ceil(_FIRST_PASS_SHARE * total)) if split_first else pass_tokens
    passes: list[list[BatchRequest]] = []
    for members in fitting:
        current: list[BatchRequest] = []
        current_tokens = 0
        for request, tokens in members:
            if current and current_tokens + tokens > limit:
                passes.append(current)
                current, current_tokens = [], 0
            if passes:
                limit = pass_tokens
            current.append(request)
            current_tokens += tokens
        if current:
            passes.append(current)
    return passes, deferred


def prefill_together(
    model: torch.nn.Module,
    requests: Sequence[BatchRequest],
    pad_token_id: int,
    forward: LlamaForward | None = None,
) -> Prefilled:
    """One forward pass over the prompts of ``requests``, their cache left-padded to the longest:
    ``forward``'s (prompts packed, no padding) where the batch loop has one, else the model's."""
    started = time.perf_counter()
    for request in requests:
        request.started_at = started
    cache = DynamicCache()
    if forward is not None:
        attention_mask, logits = forward.prefill([request.prompt_ids for request in requests], cache)
        return Prefilled(cache, attention_mask, logits)
    device = next(model.parameters()).device
    longest = max(len(request.prompt_ids) for request in requests)
    input_ids = torch.full((len(requests), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(requests), longest), dtype=torch.long)
    for row, request in enumerate(requests):
        input_ids[row, longest - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
        attention_mask[row, longest - len(request.prompt_ids) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]
    return Prefilled(cache, attention_mask, logits)


@dataclass(eq=False)
class ChunkedPrefill:
    """One long prompt, prefilled ``chunk_tokens`` at a time into a cache of its own."""

    request: BatchRequest
    chunk_tokens: int
    done_tokens: int = 0
    cache: DynamicCache = field(default_factory=DynamicCache)

    @property
    def done(self) -> bool:
        return self.done_tokens >= len(self.request.prompt_ids)

    def advance(self, model: torch.nn.Module) -> Prefilled | None:
        """Prefill the next chunk; the finished prefill once the prompt's last chunk is in."""
        if self.request.started_at is None:
            self.request.started_at = time.perf_counter()
        device = next(model.parameters()).device
        prompt = self.request.prompt_ids
        end = min(len(prompt), self.done_tokens + self.chunk_tokens)
        chunk = torch.tensor([prompt[self.done_tokens : end]], device=device)
        logits = model(
            input_ids=chunk,
            attention_mask=torch.ones((1, end), dtype=torch.long, device=device),
            position_ids=torch.arange(self.done_tokens, end, device=device).unsqueeze(0),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        self.done_tokens = end
        if end < len(prompt):
            return None
        return Prefilled(self.cache, torch.ones((1, end), dtype=torch.long, device=device), logits)
