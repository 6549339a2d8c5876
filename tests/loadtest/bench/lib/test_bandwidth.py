"""The memory-bandwidth bound: weight bytes over a measured copy bandwidth."""

from __future__ import annotations

import torch

from loadtest.bench.lib.bandwidth import (
    copy_bandwidth_bytes_per_s,
    decode_weights,
    memory_bound,
    weight_bytes,
)
from loadtest.bench.lib.tables import _memory_bound_line
from service.engine.cpu_linear import pack_linear_layers


def test_weight_bytes_count_every_parameter_at_its_dtype() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 5).to(torch.bfloat16))

    assert weight_bytes(model) == (10 * 20 + 20) * 4 + (20 * 5 + 5) * 2


class TiedModel(torch.nn.Module):
    """An embedding and an lm_head sharing one weight, as SmolLM2's."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.lm_head = torch.nn.Linear(8, 50, bias=False)
        self.lm_head.weight = self.embed.weight


def test_the_embedding_is_not_read_per_step_and_a_tied_head_counts_once_packed_or_not() -> None:
    model = TiedModel()
    plain = decode_weights(model)
    pack_linear_layers(model)

    assert plain == (50 * 8 + 2 * 8, (50 * 8 + 2 * 8) * 4)
    assert decode_weights(model) == plain


def test_bound_is_bandwidth_over_weights_and_raw_is_a_fraction_of_it() -> None:
    model = torch.nn.Linear(256, 256)

    bound = memory_bound(model, torch.device("cpu"), raw_tokens_per_s=1000.0)

    assert bound["bandwidth_bytes_per_s"] > 1e8  # any machine copies 100 MB/s
    assert bound["bound_tokens_per_s"] == bound["bandwidth_bytes_per_s"] / weight_bytes(model)
    assert bound["raw_fraction_of_bound"] == 1000.0 / bound["bound_tokens_per_s"]
    assert "decode bound" in _memory_bound_line(bound)


def test_copy_bandwidth_is_measured_on_small_buffers_too() -> None:
    assert copy_bandwidth_bytes_per_s(torch.device("cpu"), size_bytes=1 << 20, repeats=3) > 0
