"""The packed prefill's attention gives torch's results: RoPE on the queries and keys, then causal
attention within each prompt, never across prompts, in the kernel for short prompts and in SDPA
for long ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.prefill_kernels import (
    SDPA_FROM_TOKENS,
    PackedPrompts,
    prefill_attention,
    prefill_supported,
)
from tests.engine.test_decode_kernels import rope, rotate


@pytest.mark.parametrize(
    ("lengths", "kv_heads", "group", "head_dim"),
    [
        ([46], 3, 3, 64),
        ([5, 1, 12, 7], 3, 3, 64),
        ([9, 30], 2, 4, 40),
        ([1], 1, 1, 16),
        ([3, 3], 4, 1, 32),
        ([SDPA_FROM_TOKENS], 3, 3, 64),  # long: SDPA's
        ([7, SDPA_FROM_TOKENS + 30, 2, SDPA_FROM_TOKENS - 1], 3, 3, 64),  # long and short together
    ],
)
def test_prefill_attention_matches_sdpa_per_prompt(
    lengths: list[int], kv_heads: int, group: int, head_dim: int
) -> None:
    generator = torch.Generator().manual_seed(sum(lengths) * 100 + head_dim)
    tokens, heads = sum(lengths), kv_heads * group
    qkv = torch.randn(tokens, heads + 2 * kv_heads, head_dim, generator=generator)
    cos, sin = rope(tokens, head_dim, generator)
    queries = rotate(qkv[:, :heads], cos, sin).transpose(0, 1)  # [heads, tokens, head_dim]
    keys = rotate(qkv[:, heads : heads + kv_heads], cos, sin).transpose(0, 1)
    values = qkv[:, heads + kv_heads :].transpose(0, 1)
    expected = torch.empty(heads, tokens, head_dim)
    start = 0
    for length in lengths:
        span = slice(start, start + length)
        expected[:, span] = F.scaled_dot_product_attention(
            queries[:, span], keys[:, span], values[:, span], is_causal=True, scale=0.125, enable_gqa=True
        )
        start += length

    attended, got_keys, got_values = prefill_attention(qkv, cos, sin, PackedPrompts(lengths), kv_heads, 0.125)

    torch.testing.assert_close(attended, expected.transpose(0, 1).reshape(tokens, -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_keys, keys, rtol=1e-6, atol=1e-6)
    assert torch.equal(got_values, values)


def test_only_float32_cpu_activations_go_to_the_kernel() -> None:
    assert prefill_supported(torch.zeros(4, 8))
    assert not prefill_supported(torch.zeros(4, 8, dtype=torch.bfloat16))


def test_long_prompts_are_left_to_sdpa_and_short_ones_to_the_kernel() -> None:
    prompts = PackedPrompts([3, SDPA_FROM_TOKENS, 2])
    assert prompts.long_spans == [slice(3, 3 + SDPA_FROM_TOKENS)]
    assert prompts.by_kernel.tolist() == [1] * 3 + [0] * SDPA_FROM_TOKENS + [1] * 2
    assert prompts.first.tolist() == [0] * 3 + [3] * SDPA_FROM_TOKENS + [3 + SDPA_FROM_TOKENS] * 2
