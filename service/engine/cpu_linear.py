"""Linear layers with their weights reordered once for oneDNN, on CPUs.

A decode step multiplies a few rows by every weight matrix, so it is bound by how fast the
weights stream from memory. ``torch.nn.functional.linear`` (MKL, row-major weights) reaches a
third of this machine's read bandwidth there; the same matrices reordered into oneDNN's blocked
layout reach about twice that (SmolLM2-135M's linear layers at 8 rows, 2 threads: 68 ms against
30 ms per step; ``docs/performance.md``). vLLM's CPU backend does the same
(vllm/model_executor/layers/utils.py, ``dispatch_cpu_unquantized_gemm``: ``onednn_mm``); here
with torch's own ops, the ones inductor's freezing pass emits for a frozen linear layer.

The sums run in another order, so logits differ from the unpacked model's in the last bits
(about 1e-4 on SmolLM2's); greedy text can part ways after many tokens, as it does between
any two BLAS libraries.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

_PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


class PackedLinear(torch.nn.Module):
    """``torch.nn.Linear``'s forward on a oneDNN-reordered copy of its weight."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_dtype = linear.weight.dtype
        # batch_size None: a layout for any number of rows (decode steps and prefills alike).
        packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.bias = linear.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(hidden, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn"


def packing_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether this torch build can pack linear weights for ``device`` and ``dtype``."""
    return (
        device.type == "cpu"
        and dtype in _PACKABLE_DTYPES
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def pack_linear_layers(model: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`PackedLinear`; returns how many.

    The unpacked weights go once nothing else holds them; a weight tied to the embedding
    (SmolLM2's lm_head) stays for the embedding, and its packed copy is added.
    """
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear
    ]
    for parent, name, child in targets:
        setattr(parent, name, PackedLinear(child))
    logger.info("packed %d linear layers for oneDNN", len(targets))
    return len(targets)
