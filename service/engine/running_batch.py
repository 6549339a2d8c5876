"""The batch loop's running rows: one left-padded batch over one shared ``DynamicCache``.

All rows' newest token sits at the same index of the cache; the padding on the left of
a shorter row is masked out by the attention mask, and every row has its own positions.
Prefilled rows are padded to the batch's length (or the batch to theirs) and joined to
it; a finished or cancelled row is dropped, and padding columns no row needs are cut.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

if TYPE_CHECKING:
    from service.engine.batch_request import BatchRequest


class RunningBatch:
    """The running rows and their shared, left-padded KV cache."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: list[BatchRequest] = []
        self.cache: DynamicCache | None = None
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
        positions = attention_mask.sum(-1)
        if self.cache is None:
            self.cache, self.attention_mask = cache, attention_mask
            self.next_positions, self.next_tokens = positions, tokens.unsqueeze(-1)
        else:
            # Everything is built first and assigned after: a failure here (out of memory on a
            # long prompt) fails the joining requests only, not the running batch.
            ours, theirs = self.attention_mask.size(1), attention_mask.size(1)
            mine_pad, new_pad = max(0, theirs - ours), max(0, ours - theirs)
            joined = [
                (
                    torch.cat([_padded(mine_keys, mine_pad), _padded(new_keys, new_pad)]),
                    torch.cat([_padded(mine_values, mine_pad), _padded(new_values, new_pad)]),
                )
                for (mine_keys, mine_values), (new_keys, new_values) in zip(
                    _layer_tensors(self.cache), _layer_tensors(cache), strict=True
                )
            ]
            mask = torch.cat([F.pad(self.attention_mask, (mine_pad, 0)), F.pad(attention_mask, (new_pad, 0))])
            next_positions = torch.cat([self.next_positions, positions])
            next_tokens = torch.cat([self.next_tokens, tokens.unsqueeze(-1)])
            for layer, (keys, values) in zip(_dynamic_layers(self.cache), joined, strict=True):
                layer.keys, layer.values = keys, values
            self.attention_mask, self.next_positions, self.next_tokens = mask, next_positions, next_tokens
        self.requests.extend(requests)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, then cut the padding columns no remaining row needs."""
        if len(rows) == len(self.requests):
            return
        if not rows:
            self.reset()
            return
        assert self.cache is not None
        index = torch.tensor(rows, device=self.attention_mask.device)
        self.cache.batch_select_indices(index)
        self.attention_mask = self.attention_mask[index]
        self.next_positions = self.next_positions[index]
        self.next_tokens = self.next_tokens[index]
        self.requests = [self.requests[row] for row in rows]
        first = int(self.attention_mask.any(dim=0).int().argmax())  # the first column in use
        if first > 0:
            for layer, (keys, values) in zip(
                _dynamic_layers(self.cache), _layer_tensors(self.cache), strict=True
            ):
                layer.keys, layer.values = keys[:, :, first:], values[:, :, first:]
            self.attention_mask = self.attention_mask[:, first:]


def _dynamic_layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers: a DynamicCache of a full-attention model holds DynamicLayers only."""
    return [cast(DynamicLayer, layer) for layer in cache.layers]


def _layer_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [_layer_tensors_of(layer) for layer in _dynamic_layers(cache)]


def _layer_tensors_of(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's key and value states (a prefilled cache holds them in every layer)."""
    assert layer.keys is not None, "a layer of the cache holds no states"
    assert layer.values is not None, "a layer of the cache holds no states"
    return layer.keys, layer.values


def _padded(states: torch.Tensor, columns: int) -> torch.Tensor:
    """``states`` [batch, heads, length, dim] with ``columns`` empty positions on the left."""
    return F.pad(states, (0, 0, columns, 0)) if columns > 0 else states
