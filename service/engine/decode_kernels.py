"""The batch loop's decode step on CPUs, outside the linear layers: numba kernels of our own.

Attention. At one query token per row, torch's CPU attention (SDPA's flash kernel, or bmm and
softmax) runs each (row, key/value head) as a GEMM of a handful of rows (the head's group of
queries) against the cached keys and values, and the BLAS packs those operands first: the
cache is read at 9-11 GB/s, a third of this machine's read bandwidth. At 16 rows and 550
tokens of context that was 43 ms a step on SmolLM2-135M (2 threads), as long as all its
linear layers together. vLLM's CPU backend has its own kernel for the same reason
(vllm/v1/attention/backends/cpu_attn.py: ``ops.cpu_attention_with_kv_cache``). Ours streams
each row's keys once for all of the group's queries, then its values, in parallel over (row,
key/value head): 1.6-2x SDPA's speed at 1 to 16 rows and 150 to 550 tokens
(docs/performance.md). The same kernel rotates the new queries and key (RoPE) and writes the
new key and value into the slab's next column, which took seven torch ops a layer.

The rest. Between the linear layers a layer ran about twenty small torch ops (RMSNorm alone is
six inside ``F.rms_norm``, 40-50 us a call), a few microseconds of dispatch each; the residual
add and the RMSNorm after it are one kernel here.

Results equal torch's to float rounding (tests/engine/test_decode_kernels.py): the sums run
in another order.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

# No nnan/ninf: the softmax's maximum is compared, and a NaN in the cache must stay a NaN.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(fastmath=FASTMATH, nogil=True, cache=True)
def attend_one(  # pragma: no cover (compiled: numba runs it, coverage cannot see it)
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


@numba.njit(fastmath=FASTMATH, nogil=True, cache=True)
def rotate(  # pragma: no cover (compiled)
    vector: np.ndarray, cos: np.ndarray, sin: np.ndarray, out: np.ndarray
) -> None:
    """RoPE as transformers applies it: ``vector * cos + rotate_half(vector) * sin``."""
    half = vector.shape[0] // 2
    for i in range(half):
        out[i] = vector[i] * cos[i] - vector[i + half] * sin[i]
        out[i + half] = vector[i + half] * cos[i + half] + vector[i] * sin[i + half]


@numba.njit(parallel=True, nogil=True, cache=True)
def _attention_block(  # pragma: no cover (compiled)
    qkv: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    slab_keys: np.ndarray,
    slab_values: np.ndarray,
    start: int,
    mask: np.ndarray,
    scale: float,
    out: np.ndarray,
) -> None:
    rows, projected, head_dim = qkv.shape
    kv_heads = slab_keys.shape[1]
    heads = projected - 2 * kv_heads
    group = heads // kv_heads
    column = start + mask.shape[1] - 1  # the new token's
    for task in numba.prange(rows * kv_heads):
        row, head = task // kv_heads, task % kv_heads
        rotate(qkv[row, heads + head], cos[row], sin[row], slab_keys[row, head, column])
        slab_values[row, head, column] = qkv[row, heads + kv_heads + head]
        queries = np.empty((group, head_dim), np.float32)
        for member in range(group):
            rotate(qkv[row, head * group + member], cos[row], sin[row], queries[member])
        attend_one(
            queries,
            slab_keys[row, head, start : column + 1],
            slab_values[row, head, start : column + 1],
            mask[row],
            np.float32(scale),
            out[row, head * group : (head + 1) * group],
        )


@numba.njit(fastmath=FASTMATH, nogil=True, cache=True)
def _add_rms_norm(  # pragma: no cover (compiled)
    hidden: np.ndarray, delta: np.ndarray, weight: np.ndarray, eps: float, normed: np.ndarray
) -> None:
    rows, size = hidden.shape
    for row in range(rows):
        total = np.float32(0.0)
        for i in range(size):
            value = hidden[row, i] + delta[row, i]
            hidden[row, i] = value
            total += value * value
        inverse = np.float32(1.0) / np.sqrt(total / np.float32(size) + np.float32(eps))
        for i in range(size):
            normed[row, i] = hidden[row, i] * inverse * weight[i]


def slab_supported(slab_keys: torch.Tensor) -> bool:
    """Whether the kernel reads this slab: float32 on the CPU, laid out contiguously."""
    return slab_keys.device.type == "cpu" and slab_keys.dtype == torch.float32 and slab_keys.is_contiguous()


def attention_block(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    slab_keys: torch.Tensor,
    slab_values: torch.Tensor,
    start: int,
    attention_mask: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """A decode step's attention, from the packed q/k/v projection of one new token per row.

    ``qkv`` is [rows, heads + 2 * kv_heads, head_dim] (queries, keys, values), ``cos`` and
    ``sin`` [rows, head_dim], the slabs [slab_rows, kv_heads, slab_columns, head_dim] with the
    batch in the first rows, ``attention_mask`` [rows, columns] (0: padding) over slab columns
    ``[start, start + columns)``, the last of them the new token's: its rotated key and its
    value are written there. Returns the attended queries, [rows, heads * head_dim].
    """
    use_torch_threads()
    rows, projected, head_dim = qkv.shape
    out = qkv.new_empty((rows, projected - 2 * slab_keys.shape[1], head_dim))
    _attention_block(
        qkv.contiguous().numpy(),
        cos.contiguous().numpy(),
        sin.contiguous().numpy(),
        slab_keys.numpy(),
        slab_values.numpy(),
        start,
        attention_mask.to(torch.uint8).contiguous().numpy(),  # one dtype and layout: one compilation
        scale,
        out.numpy(),
    )
    return out.view(rows, -1)


def add_rms_norm(hidden: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``hidden += delta`` in place, then RMSNorm of it (``F.rms_norm``'s): returns the normed rows.

    ``hidden`` and ``delta`` are [rows, size], contiguous float32 on the CPU."""
    normed = torch.empty_like(hidden)
    _add_rms_norm(hidden.numpy(), delta.contiguous().numpy(), weight.numpy(), eps, normed.numpy())
    return normed


def use_torch_threads() -> None:
    """numba's threads for this thread's kernels: as many as torch's (``--torch-threads``)."""
    # numba's config sets its attributes at import, out of the type checker's sight.
    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    wanted = max(1, min(torch.get_num_threads(), most))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
