"""The decode step's kernels give torch's results: attention over the slab's columns in use
(padding masked, the new key rotated and written), and the residual add with RMSNorm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.decode_kernels import add_rms_norm, attention_block, slab_supported


def rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' apply_rotary_pos_emb on [rows, heads, head_dim] with cos, sin [rows, head_dim]."""
    half = states.shape[-1] // 2
    rotated = torch.cat((-states[..., half:], states[..., :half]), dim=-1)
    return states * cos[:, None] + rotated * sin[:, None]


def rope(rows: int, head_dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.rand(rows, head_dim // 2, generator=generator) * 100
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


@pytest.mark.parametrize(
    ("rows", "kv_heads", "group", "head_dim", "columns"),
    [(1, 3, 3, 64, 7), (5, 3, 3, 64, 300), (4, 2, 4, 40, 33), (3, 1, 1, 16, 1), (16, 3, 3, 64, 550)],
)
def test_attention_block_matches_torch_over_the_columns_in_use(
    rows: int, kv_heads: int, group: int, head_dim: int, columns: int
) -> None:
    generator = torch.Generator().manual_seed(rows * 1000 + columns)
    heads, start = kv_heads * group, 5  # columns before start belong to no row (cut padding)
    shape = (rows + 2, kv_heads, start + columns + 9, head_dim)  # a slab with room to spare
    slab_keys, slab_values = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    slab_keys[:, :, :start] = float("nan")  # read, they would poison the result
    mask = torch.ones(rows, columns, dtype=torch.long)
    for row in range(rows):
        padding = (row * 3) % columns  # left padding, each row its own; the new column always in use
        mask[row, :padding] = 0
        slab_keys[row, :, start : start + padding] = float("nan")
    qkv = torch.randn(rows, heads + 2 * kv_heads, head_dim, generator=generator)
    cos, sin = rope(rows, head_dim, generator)
    new = start + columns - 1
    expected_keys = slab_keys.clone()
    expected_keys[:rows, :, new] = rotate(qkv[:, heads : heads + kv_heads], cos, sin)
    expected_values = slab_values.clone()
    expected_values[:rows, :, new] = qkv[:, heads + kv_heads :]
    queries = rotate(qkv[:, :heads], cos, sin).view(rows, kv_heads, group, head_dim)
    expected = F.scaled_dot_product_attention(
        queries,
        expected_keys[:rows, :, start : new + 1].nan_to_num(),
        expected_values[:rows, :, start : new + 1],
        attn_mask=mask.bool()[:, None, None, :],
        scale=0.125,
    ).reshape(rows, heads * head_dim)

    got = attention_block(qkv, cos, sin, slab_keys, slab_values, start, mask, 0.125)

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(slab_keys, expected_keys, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert torch.equal(slab_values, expected_values)


def test_a_nan_in_the_cache_stays_a_nan() -> None:
    """Fast math without the no-NaN assumption: a broken cache shows, it is not silently dropped."""
    slab = torch.randn(1, 1, 8, 16)
    slab[0, 0, 3, 0] = float("nan")
    cos, sin = torch.ones(1, 16), torch.zeros(1, 16)

    got = attention_block(torch.randn(1, 3, 16), cos, sin, slab, slab.clone(), 0, torch.ones(1, 8), 0.25)

    assert got.isnan().any()


@pytest.mark.parametrize("rows", [1, 16])
def test_add_rms_norm_adds_in_place_and_normalises_as_torch_does(rows: int) -> None:
    generator = torch.Generator().manual_seed(rows)
    hidden, delta = torch.randn(rows, 576, generator=generator), torch.randn(rows, 576, generator=generator)
    weight = torch.rand(576, generator=generator) + 0.5
    expected_hidden = hidden + delta
    expected = F.rms_norm(expected_hidden, (576,), weight, 1e-5)

    got = add_rms_norm(hidden, delta, weight, 1e-5)

    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_only_float32_cpu_slabs_go_to_the_kernels() -> None:
    assert slab_supported(torch.zeros(2, 3, 4, 8))
    assert not slab_supported(torch.zeros(2, 3, 4, 8, dtype=torch.bfloat16))
    assert not slab_supported(torch.zeros(2, 3, 8, 4).transpose(-1, -2))
