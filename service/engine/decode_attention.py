"""Decode attention on CPUs: one new query token per row over the running batch's KV slab.

At one query token per row, torch's CPU attention (SDPA's flash kernel, or bmm and softmax)
runs each (row, key/value head) as a GEMM of a handful of rows (the head's group of queries)
against the cached keys and values, and the BLAS packs those operands first: the cache is read
at 9-11 GB/s, a third of this machine's read bandwidth. At 16 rows and 550 tokens of context
that was 43 ms a step on SmolLM2-135M (2 threads), as long as all its linear layers together.
vLLM's CPU backend has its own kernel for the same reason
(vllm/v1/attention/backends/cpu_attn.py: ``ops.cpu_attention_with_kv_cache``).

This kernel, compiled by numba, streams each row's keys once for all of the group's queries,
then its values, in parallel over (row, key/value head): 2x SDPA's speed at 1 to 16 rows and
150 to 550 tokens (docs/performance.md), the same result to float rounding. It reads the slab
in place: columns ``[start, end)`` and each row's attention mask, so padding on the left is
never read.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

# No nnan/ninf: the softmax's maximum is compared, and a NaN in the cache must stay a NaN.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(fastmath=_FASTMATH, nogil=True, cache=True)
def _attend_one(  # pragma: no cover (compiled: numba runs it, coverage cannot see it)
    query: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray,
    scale: np.float32,
    out: np.ndarray,
) -> None:
    """One (row, key/value head): ``query`` [group, head_dim] over ``keys`` and ``values``
    [columns, head_dim] where ``mask`` [columns] is not 0, into ``out`` [group, head_dim]."""
    group, head_dim = query.shape
    columns = mask.shape[0]
    scores = np.zeros((group, columns), np.float32)
    # The largest score per query, for a softmax that cannot overflow: every row attends to at
    # least its newest column, so it is always set.
    largest = np.full(group, -np.inf, np.float32)
    for column in range(columns):
        if mask[column] != 0:
            key = keys[column]
            for member in range(group):
                total = np.float32(0.0)
                for i in range(head_dim):
                    total += query[member, i] * key[i]
                scores[member, column] = total * scale
                largest[member] = max(largest[member], scores[member, column])
    for member in range(group):
        norm = np.float32(0.0)
        for column in range(columns):
            if mask[column] != 0:
                weight = np.exp(scores[member, column] - largest[member])
                scores[member, column] = weight
                norm += weight
        for column in range(columns):
            scores[member, column] /= norm  # masked columns stay 0
    out[:] = 0.0
    for column in range(columns):
        if mask[column] != 0:
            value = values[column]
            for member in range(group):
                weight = scores[member, column]
                for i in range(head_dim):
                    out[member, i] += weight * value[i]


@numba.njit(parallel=True, nogil=True, cache=True)
def _attend(  # pragma: no cover (compiled: numba runs it, coverage cannot see it)
    query: np.ndarray,
    slab_keys: np.ndarray,
    slab_values: np.ndarray,
    mask: np.ndarray,
    start: int,
    scale: float,
    out: np.ndarray,
) -> None:
    rows, kv_heads = query.shape[0], query.shape[1]
    end = start + mask.shape[1]
    for task in numba.prange(rows * kv_heads):
        row, head = task // kv_heads, task % kv_heads
        _attend_one(
            query[row, head],
            slab_keys[row, head, start:end],
            slab_values[row, head, start:end],
            mask[row],
            np.float32(scale),
            out[row, head],
        )


def slab_supported(slab_keys: torch.Tensor) -> bool:
    """Whether the kernel reads this slab: float32 on the CPU, laid out contiguously."""
    return slab_keys.device.type == "cpu" and slab_keys.dtype == torch.float32 and slab_keys.is_contiguous()


def slab_attention(
    query: torch.Tensor,
    slab_keys: torch.Tensor,
    slab_values: torch.Tensor,
    start: int,
    attention_mask: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Attention of one query token per row over slab columns ``[start, start + columns)``.

    ``query`` is [rows, kv_heads, group, head_dim] (a key/value head's queries together), the
    slabs [slab_rows, kv_heads, slab_columns, head_dim] with the batch in the first rows, and
    ``attention_mask`` [rows, columns] (0: padding). Returns the query's shape.
    """
    _use_torch_threads()
    query = query.contiguous()
    out = torch.empty_like(query)
    mask = attention_mask.to(torch.uint8).contiguous()  # one dtype and layout: one compilation
    _attend(query.numpy(), slab_keys.numpy(), slab_values.numpy(), mask.numpy(), start, scale, out.numpy())
    return out


def _use_torch_threads() -> None:
    """numba's threads for this thread's kernels: as many as torch's (``--torch-threads``)."""
    # numba's config sets its attributes at import, out of the type checker's sight.
    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    wanted = max(1, min(torch.get_num_threads(), most))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
