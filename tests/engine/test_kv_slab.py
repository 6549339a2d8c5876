"""The slab cache holds what a concatenated cache would: rows joining (shorter and longer than
the batch), steps, rows leaving, padding forgotten and the slab growing. Plain tensors, no model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.kv_slab import SlabLayer, slab_cache

HEADS, DIM = 2, 4


def states(rows: int, length: int) -> torch.Tensor:
    return torch.randn(rows, HEADS, length, DIM)


def views(layer: SlabLayer) -> tuple[torch.Tensor, torch.Tensor]:
    assert layer.keys is not None
    assert layer.values is not None
    return layer.keys, layer.values


def left_padded(tensor: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(tensor, (0, 0, length - tensor.shape[2], 0))


def test_joins_steps_leaves_and_growth_match_concatenation() -> None:
    layer = SlabLayer(max_rows=8)
    first_keys, first_values = states(2, 5), states(2, 5)
    layer.append_rows(first_keys, first_values)
    expected_keys, expected_values = first_keys, first_values

    # Longer than the batch: the batch widens on the left.
    longer_keys, longer_values = states(1, 9), states(1, 9)
    layer.append_rows(longer_keys, longer_values)
    expected_keys = torch.cat([left_padded(expected_keys, 9), longer_keys])
    expected_values = torch.cat([left_padded(expected_values, 9), longer_values])
    keys, values = views(layer)
    # Padding columns are masked out by the batch's attention mask: only the rows' own columns count.
    assert torch.equal(keys[:2, :, 4:], expected_keys[:2, :, 4:])
    assert torch.equal(values[2], expected_values[2])

    for _ in range(600):  # past the first slab's headroom: it grows, and the states move along
        step_keys, step_values = states(3, 1), states(3, 1)
        keys, values = layer.update(step_keys, step_values)
        expected_keys = torch.cat([expected_keys, step_keys], dim=2)
        expected_values = torch.cat([expected_values, step_values], dim=2)
    assert keys.shape == (3, HEADS, 609, DIM)
    assert torch.equal(keys[:, :, 9:], expected_keys[:, :, 9:])
    assert torch.equal(values[2], expected_values[2])
    assert layer.get_seq_length() == 609

    layer.keep_rows([0, 2])
    layer.drop_columns(4)
    keys, values = views(layer)
    assert torch.equal(keys, expected_keys[[0, 2], :, 4:])
    assert torch.equal(values, expected_values[[0, 2], :, 4:])
    assert layer.get_seq_length() == 605


def test_padding_columns_are_zeros_never_uninitialised_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slabs are allocated uninitialised: here full of NaN, which must never show in the columns
    in use (attention multiplies padding by a zero weight, and 0 * NaN is NaN)."""
    new_empty = torch.Tensor.new_empty
    nan_filled = lambda self, size: new_empty(self, size).fill_(float("nan"))  # noqa: E731 (a one-liner)
    monkeypatch.setattr(torch.Tensor, "new_empty", nan_filled)
    layer = SlabLayer(max_rows=4)
    layer.append_rows(states(1, 8), states(1, 8))
    layer.append_rows(states(1, 3), states(1, 3))  # shorter: columns 0-4 of its row are padding
    _, values = views(layer)
    assert torch.count_nonzero(values[1, :, :5]) == 0

    layer.update(states(2, 1), states(2, 1))
    layer.append_rows(states(2, 12), states(2, 12))  # longer, more rows: a new slab, wider on the left
    layer.keep_rows([1, 2, 3])
    layer.append_rows(states(1, 20), states(1, 20))  # wider again, within the slab
    for _ in range(300):  # past the headroom: the slab grows
        layer.update(states(4, 1), states(4, 1))

    keys, values = views(layer)
    assert keys.shape == (4, HEADS, 320, DIM)
    assert torch.isfinite(keys).all()
    assert torch.isfinite(values).all()
    # The 3-token row (first now): 5 columns of padding, then 3 more for the 12-token rows and 8
    # for the 20-token one.
    assert torch.count_nonzero(keys[0, :, :16]) == torch.count_nonzero(values[0, :, :16]) == 0


def test_rows_grow_by_doubling_up_to_the_most_the_batch_runs() -> None:
    layer = SlabLayer(max_rows=3)
    for _ in range(3):
        layer.append_rows(states(1, 2), states(1, 2))

    assert layer.slab_keys.shape[0] == 3
    assert views(layer)[0].shape[0] == 3


def test_rows_joining_keep_the_slabs_width_while_it_suffices() -> None:
    """Joins that need more rows, or more columns on the left, move the slab without doubling its
    columns (a burst joining pass after pass once doubled them at each join)."""
    layer = SlabLayer(max_rows=16)
    layer.append_rows(states(4, 40), states(4, 40))
    width = layer.slab_keys.shape[2]
    for rows, length in ((4, 44), (1, 52), (4, 48), (3, 60)):
        layer.append_rows(states(rows, length), states(rows, length))
        layer.update(states(layer.rows, 1), states(layer.rows, 1))  # a decode step between joins

    assert layer.slab_keys.shape[0] == 16
    assert layer.slab_keys.shape[2] == width
    assert views(layer)[0].shape == (16, HEADS, 61, DIM)  # the longest, 60, and a step


def test_a_slab_cache_is_a_transformers_cache_the_model_can_update() -> None:
    cache = slab_cache(num_layers=2, max_rows=4)
    for layer in cache.layers:
        assert isinstance(layer, SlabLayer)
        layer.append_rows(states(2, 3), states(2, 3))

    keys, _ = cache.update(states(2, 1), states(2, 1), layer_idx=1)

    assert keys.shape == (2, HEADS, 4, DIM)
    assert cache.get_seq_length(0) == 3
    assert cache.get_seq_length(1) == 4
