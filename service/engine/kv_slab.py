"""The running batch's KV cache: per layer, one preallocated slab written in place.

``DynamicCache`` grows by ``torch.cat`` at every step, so each decode step copies every
row's whole cache, in every layer: 20% of a batch-8 step on SmolLM2-135M at 150 tokens of
context, and growing with it (docs/performance.md). Here each layer's keys and values live
in a slab [rows, heads, columns, head_dim] with room to spare; a step writes one column,
and attention reads a view of the columns in use, ``[start, end)``. Cutting padding on the
left moves ``start``; only growing past the slab (doubling, so rarely), joining rows longer
than the batch's left margin, or dropping rows copies.

The layout is the running batch's (service.engine.running_batch): rows left-padded so that
every row's newest token sits in the same column.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Free columns a new or grown slab gets on the right, beyond what it holds (doubling after that).
_HEADROOM_COLUMNS = 256


class SlabLayer(DynamicLayer):
    """One layer's cache. ``keys`` and ``values`` are views of the slab's rows and columns in use,
    so everything that reads a ``DynamicLayer`` (the model's attention, ``get_seq_length``) reads it."""

    def __init__(self, max_rows: int) -> None:
        super().__init__()
        self.max_rows = max_rows  # rows grow by doubling up to this
        self.slab_keys = torch.zeros(0)
        self.slab_values = torch.zeros(0)
        self.rows = self.start = self.end = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new columns (a decode step: one) after the ones in use."""
        new = key_states.shape[-2]
        self.reserve(left=0, right=new)
        self.slab_keys[: self.rows, :, self.end : self.end + new] = key_states
        self.slab_values[: self.rows, :, self.end : self.end + new] = value_states
        self.end += new
        return self._refresh_views()

    def append_column(self) -> None:
        """Take the next column after the ones in use, for a kernel that writes the new token's key
        and value there itself (service.engine.decode_kernels)."""
        self.reserve(left=0, right=1)
        self.end += 1
        self._refresh_views()

    def make_room(self, keys: torch.Tensor) -> None:
        """Allocate what :meth:`append_rows` of rows like ``keys`` needs (the only step of a join
        that allocates, so a join that runs out of memory fails before it changes anything)."""
        rows, length = keys.shape[0], keys.shape[-2]
        if not self.is_initialized:
            self._allocate(keys, rows, left=length)
        self.reserve(left=max(0, length - (self.end - self.start)), right=0, rows=self.rows + rows)

    def append_rows(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows below the ones in use, right-aligned to the last column in use; rows longer than
        the columns in use widen them on the left (their padding is the caller's attention mask's)."""
        self.make_room(keys)
        rows, length = keys.shape[0], keys.shape[-2]
        start = min(self.start, self.end - length)
        # Columns coming into use are padding, read as zeros: those left of the columns in use
        # for the rows already here, and the joining rows' left of their keys.
        for slab in (self.slab_keys, self.slab_values):
            if start < self.start:
                slab[: self.rows, :, start : self.start] = 0
            if start < self.end - length:
                slab[self.rows : self.rows + rows, :, start : self.end - length] = 0
        self.start = start
        self.slab_keys[self.rows : self.rows + rows, :, self.end - length : self.end] = keys
        self.slab_values[self.rows : self.rows + rows, :, self.end - length : self.end] = values
        self.rows += rows
        self._refresh_views()

    def keep_rows(self, rows: list[int]) -> None:
        """Keep these rows (ascending), moved up in place: each moves up or stays, so copying in
        order never overwrites a row still to be moved, and nothing is allocated."""
        assert rows == sorted(rows), "rows must be ascending"
        columns = slice(self.start, self.end)
        for target, source in enumerate(rows):
            if target != source:
                self.slab_keys[target, :, columns] = self.slab_keys[source, :, columns]
                self.slab_values[target, :, columns] = self.slab_values[source, :, columns]
        self.rows = len(rows)
        self._refresh_views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keep_rows(indices.tolist())

    def drop_columns(self, count: int) -> None:
        """Forget the first ``count`` columns in use (padding no row needs any more): no copy."""
        self.start += count
        self._refresh_views()

    def reserve(self, left: int, right: int, rows: int = 0) -> None:
        """Make room for ``left`` more columns before ``start``, ``right`` after ``end`` and ``rows``
        rows, moving the columns in use to a larger slab if this one lacks it."""
        slab_rows, columns = self.slab_keys.shape[0], self.slab_keys.shape[2]
        if left <= self.start and self.end + right <= columns and rows <= slab_rows:
            return
        in_use = self.end - self.start
        needed = left + in_use + right
        # Columns double only when they run out: rows joining (or a longer row shifting the columns
        # in use right) keep the width. Doubling for those too made a burst of 16 joining in passes
        # allocate (and zero) gigabytes, seconds of a 2-core CPU's time.
        new_columns = columns if needed <= columns else max(2 * columns, needed + _HEADROOM_COLUMNS)
        new_rows = max(rows, min(2 * slab_rows, self.max_rows)) if rows > slab_rows else slab_rows
        _, heads, _, head_dim = self.slab_keys.shape
        keys = self.slab_keys.new_empty((new_rows, heads, new_columns, head_dim))
        values = self.slab_values.new_empty((new_rows, heads, new_columns, head_dim))
        keys[: self.rows, :, left : left + in_use] = self.slab_keys[: self.rows, :, self.start : self.end]
        values[: self.rows, :, left : left + in_use] = self.slab_values[: self.rows, :, self.start : self.end]
        self.slab_keys, self.slab_values = keys, values
        self.start, self.end = left, left + in_use

    def _allocate(self, like: torch.Tensor, rows: int, left: int) -> None:
        # Uninitialised, not zeros (zeroing a new batch's slabs was most of its join): only the
        # columns in use are read, and each is written before it is: a row's keys and values, a
        # decode step's new column, or zeros for padding (append_rows), which attention
        # multiplies by a zero weight (0 * NaN from uninitialised memory would be NaN).
        shape = (rows, like.shape[1], left + _HEADROOM_COLUMNS, like.shape[3])
        self.slab_keys = like.new_empty(shape)
        self.slab_values = like.new_empty(shape)
        self.dtype, self.device = like.dtype, like.device
        self.start = self.end = left
        self.is_initialized = True

    def _refresh_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.keys = self.slab_keys[: self.rows, :, self.start : self.end]
        values = self.values = self.slab_values[: self.rows, :, self.start : self.end]
        return keys, values


def slab_cache(num_layers: int, max_rows: int) -> Cache:
    """An empty cache of :class:`SlabLayer` layers, for the model's forward like any other."""
    return Cache(layers=[SlabLayer(max_rows) for _ in range(num_layers)])
