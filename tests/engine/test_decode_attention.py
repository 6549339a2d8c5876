"""The decode attention kernel gives SDPA's result over the slab's columns in use, padding masked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.decode_attention import slab_attention, slab_supported


def sdpa(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """torch's attention of the same queries (a group's queries as rows, as llama_forward packs them)."""
    return F.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask.bool()[:, None, None, :], scale=scale
    )


@pytest.mark.parametrize(
    ("rows", "kv_heads", "group", "head_dim", "columns"),
    [(1, 3, 3, 64, 7), (5, 3, 3, 64, 300), (4, 2, 4, 40, 33), (3, 1, 1, 16, 1), (16, 3, 3, 64, 550)],
)
def test_matches_sdpa_over_the_columns_in_use(
    rows: int, kv_heads: int, group: int, head_dim: int, columns: int
) -> None:
    generator = torch.Generator().manual_seed(rows * 1000 + columns)
    start = 5  # columns before start belong to no row (cut padding): never read
    shape = (rows + 2, kv_heads, start + columns + 9, head_dim)  # a slab with room to spare
    slab_keys, slab_values = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    slab_keys[:, :, :start] = float("nan")  # read, they would poison the result
    query = torch.randn(rows, kv_heads, group, head_dim, generator=generator)
    mask = torch.ones(rows, columns, dtype=torch.long)
    for row in range(rows):
        padding = (row * 3) % columns  # left padding, each row its own; the last column always in use
        mask[row, :padding] = 0
        slab_keys[row, :, start : start + padding] = float("nan")
    keys = slab_keys[:rows, :, start : start + columns]
    values = slab_values[:rows, :, start : start + columns]
    expected = sdpa(query, keys.nan_to_num(), values, mask, 0.125)

    got = slab_attention(query, slab_keys, slab_values, start, mask, 0.125)

    assert got.shape == query.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_query_that_is_not_contiguous_is_read_right() -> None:
    """llama_forward's queries are a view of the packed q/k/v projection."""
    slab = torch.randn(2, 3, 20, 64)
    query = torch.randn(2, 3, 64, 3).transpose(-1, -2)
    mask = torch.ones(2, 12, dtype=torch.long)
    expected = sdpa(query, slab[:, :, 4:16], slab[:, :, 4:16], mask, 0.1)

    torch.testing.assert_close(
        slab_attention(query, slab, slab, 4, mask, 0.1), expected, rtol=1e-5, atol=1e-5
    )


def test_a_nan_in_the_cache_stays_a_nan() -> None:
    """Fast math without the no-NaN assumption: a broken cache shows, it is not silently dropped."""
    slab = torch.randn(1, 1, 8, 16)
    slab[0, 0, 3, 0] = float("nan")

    got = slab_attention(torch.randn(1, 1, 1, 16), slab, slab, 0, torch.ones(1, 8, dtype=torch.long), 0.25)

    assert got.isnan().any()


def test_only_float32_cpu_slabs_go_to_the_kernel() -> None:
    assert slab_supported(torch.zeros(2, 3, 4, 8))
    assert not slab_supported(torch.zeros(2, 3, 4, 8, dtype=torch.bfloat16))
    assert not slab_supported(torch.zeros(2, 3, 8, 4).transpose(-1, -2))
