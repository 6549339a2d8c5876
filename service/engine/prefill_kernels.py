"""A packed prefill's attention on CPUs, RoPE included: a numba kernel of our own, and SDPA for
long prompts.

Prompts prefilled together run packed end to end (service.engine.llama_forward). Per layer,
torch rotated the queries and keys in five ops (two products, a negation, a concatenation and
a sum over copies of them) and ran SDPA's flash kernel once per prompt on transposed views:
on SmolLM2-135M a 46-token prompt spent ~9 ms of its ~107 ms prefill there (torch.profiler,
2 threads), for arithmetic worth a few hundred microseconds. This kernel rotates every
token's queries and key in one parallel pass, then attends causally within each prompt in
parallel over (key/value head, token) with the decode step's attention of one query (a group's
queries read each key and value once). It writes the attended queries in the layout the output
projection reads, and the rotated keys and the values as the cache takes them.

Its attention is a dot product per (query, key), so it grows with the square of a prompt's
length, faster than SDPA's blocked flash kernel, which costs more per call (~50 us) but less
per pair: a layer of SmolLM2-135M, 2 threads (AMD EPYC, AVX2), kernel against SDPA on the
rotated views: 162 against 173 us at 48 tokens, 251/209 at 64, 701/499 at 128, 9.2/4.9 ms at
500. So a prompt of :data:`SDPA_FROM_TOKENS` or more attends with SDPA; shorter ones, and
several short prompts at once (8 of ~47 tokens: 0.8 against 1.3 ms), with the kernel.

Results equal torch's to float rounding (tests/engine/test_prefill_kernels.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.decode_kernels import FASTMATH, attend_one, rotate, use_torch_threads

# Prompts at least this long attend with SDPA (module docstring).
SDPA_FROM_TOKENS = 64


class PackedPrompts:
    """Where each of the prompts packed end to end lies, computed once for every layer's kernel."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.lengths = list(lengths)
        starts = np.cumsum([0, *self.lengths[:-1]]).astype(np.int64)
        # Per token: its prompt's first token, and whether the kernel attends for it.
        self.first = np.repeat(starts, self.lengths)
        self.by_kernel = np.repeat([length < SDPA_FROM_TOKENS for length in self.lengths], self.lengths)
        self.by_kernel = self.by_kernel.astype(np.uint8)
        self.long_spans = [
            slice(int(start), int(start) + length)
            for start, length in zip(starts, self.lengths, strict=True)
            if length >= SDPA_FROM_TOKENS
        ]


@numba.njit(parallel=True, fastmath=FASTMATH, nogil=True, cache=True)
def _prefill_attention(  # pragma: no cover (compiled: numba runs it, coverage cannot see it)
    qkv: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    first: np.ndarray,
    by_kernel: np.ndarray,
    scale: np.float32,
    queries: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    out: np.ndarray,
) -> None:
    tokens, projected = qkv.shape[:2]
    kv_heads = keys.shape[0]
    heads = projected - 2 * kv_heads
    group = heads // kv_heads
    for token in numba.prange(tokens):
        for head in range(heads):
            rotate(qkv[token, head], cos[token], sin[token], queries[token, head])
        for head in range(kv_heads):
            rotate(qkv[token, heads + head], cos[token], sin[token], keys[head, token])
            values[head, token] = qkv[token, heads + kv_heads + head]
    everywhere = np.ones(tokens, np.uint8)  # a mask with no padding: a prompt's tokens are all its own
    for task in numba.prange(kv_heads * tokens):
        head, token = task // tokens, task % tokens
        if by_kernel[token] == 0:
            continue  # a long prompt's: SDPA attends for it
        start = first[token]  # its prompt's first token: it attends to that one up to itself
        attend_one(
            queries[token, head * group : (head + 1) * group],
            keys[head, start : token + 1],
            values[head, start : token + 1],
            everywhere[: token + 1 - start],
            scale,
            out[token, head * group : (head + 1) * group],
        )


def prefill_attention(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    prompts: PackedPrompts,
    kv_heads: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal attention within each of the packed prompts, from their q/k/v projection.

    ``qkv`` is [tokens, heads + 2 * kv_heads, head_dim] (queries, keys, values) of ``prompts``
    end to end, ``cos`` and ``sin`` [tokens, head_dim] at each token's position.
    Returns the attended queries [tokens, heads * head_dim] and the rotated keys and the
    values, each [kv_heads, tokens, head_dim].
    """
    use_torch_threads()
    tokens, projected, head_dim = qkv.shape
    queries = qkv.new_empty((tokens, projected - 2 * kv_heads, head_dim))
    keys = qkv.new_empty((kv_heads, tokens, head_dim))
    values = torch.empty_like(keys)
    out = torch.empty_like(queries)
    _prefill_attention(
        qkv.contiguous().numpy(),
        cos.contiguous().numpy(),
        sin.contiguous().numpy(),
        prompts.first,
        prompts.by_kernel,
        np.float32(scale),
        queries.numpy(),
        keys.numpy(),
        values.numpy(),
        out.numpy(),
    )
    for span in prompts.long_spans:
        attended = F.scaled_dot_product_attention(
            queries[span].transpose(0, 1).unsqueeze(0),
            keys[:, span].unsqueeze(0),
            values[:, span].unsqueeze(0),
            is_causal=True,
            scale=scale,
            enable_gqa=True,
        )
        out[span] = attended[0].transpose(0, 1)
    return out.view(tokens, -1), keys, values


def prefill_supported(states: torch.Tensor) -> bool:
    """Whether the kernel takes these activations: float32 on the CPU."""
    return states.device.type == "cpu" and states.dtype == torch.float32
