"""The batch loop's running rows: one left-padded batch over one shared KV cache.

All rows' newest token sits at the same column of the cache; the padding on the left of
a shorter row is masked out by the attention mask, and every row has its own positions.
Prefilled rows are padded to the batch's length (or the batch to theirs) and joined to
it; a finished or cancelled row is dropped, and padding columns no row needs are cut.
The cache is preallocated and written in place (service.engine.kv_slab).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from service.engine.kv_slab import SlabLayer, slab_cache

if TYPE_CHECKING:
    from service.engine.batch_request import BatchRequest


class RunningBatch:
    """The running rows and their shared, left-padded KV cache (service.engine.kv_slab)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.reset()

    def reset(self) -> None:
        self.requests: list[BatchRequest] = []
        self.cache: Cache | None = None
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
        joining = _layer_tensors(cache)
        if self.cache is None:
            self.cache = slab_cache(len(joining), self.max_rows)
        layers = _slab_layers(self.cache)
        # Everything that allocates runs first and the batch changes after: a failure here (out
        # of memory on a long prompt) fails the joining requests only, not the running batch.
        ours, theirs = self.attention_mask.size(1), attention_mask.size(1)
        mine_pad, new_pad = max(0, theirs - ours), max(0, ours - theirs)
        mask = torch.cat([F.pad(self.attention_mask, (mine_pad, 0)), F.pad(attention_mask, (new_pad, 0))])
        next_positions = torch.cat([self.next_positions, attention_mask.sum(-1)])
        next_tokens = torch.cat([self.next_tokens, tokens.unsqueeze(-1)])
        for layer, (keys, _) in zip(layers, joining, strict=True):
            layer.make_room(keys)
        for layer, (keys, values) in zip(layers, joining, strict=True):
            layer.append_rows(keys, values)
        self.attention_mask, self.next_positions, self.next_tokens = mask, next_positions, next_tokens
        self.requests.extend(requests)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (ascending), then forget the padding columns no remaining row needs."""
        if len(rows) == len(self.requests):
            return
        if not rows:
            self.reset()
            return
        assert self.cache is not None
        index = torch.tensor(rows, device=self.attention_mask.device)
        layers = _slab_layers(self.cache)
        for layer in layers:
            layer.keep_rows(rows)
        self.attention_mask = self.attention_mask[index]
        self.next_positions = self.next_positions[index]
        self.next_tokens = self.next_tokens[index]
        self.requests = [self.requests[row] for row in rows]
        first = int(self.attention_mask.any(dim=0).int().argmax())  # the first column in use
        if first > 0:
            for layer in layers:
                layer.drop_columns(first)
            self.attention_mask = self.attention_mask[:, first:]


def _slab_layers(cache: Cache) -> list[SlabLayer]:
    return [cast(SlabLayer, layer) for layer in cache.layers]


def _layer_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A prefilled cache's key and value states, layer by layer (a full-attention model's
    DynamicCache holds DynamicLayers, each with states once prefilled)."""
    tensors = []
    for layer in cache.layers:
        assert isinstance(layer, DynamicLayer), "a prefilled cache holds DynamicLayers"
        assert layer.keys is not None, "a layer of the cache holds no states"
        assert layer.values is not None, "a layer of the cache holds no states"
        tensors.append((layer.keys, layer.values))
    return tensors
