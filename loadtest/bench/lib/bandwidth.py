"""The memory-bandwidth bound on single-stream decode.

Decoding one token reads every weight once, so one stream cannot exceed
(measured memory bandwidth) / (weight bytes) tokens/s; raw generate and each
served single stream are reported as a fraction of that bound. Bandwidth is
measured here, as a large device-to-device copy (read + write), not taken from
a spec sheet.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def decode_weights(model: Any) -> tuple[int, int]:
    """Parameters a decode step reads, and their bytes: every linear layer's weight (oneDNN-packed
    ones too, service/engine/cpu_linear.py, whose weights are buffers) and the norms, not the
    embedding table, of which a step reads one row. A tied lm_head counts once, as a layer."""
    import torch

    from service.engine.cpu_linear import PackedLinear, SharedInputLinear

    count = size = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        if isinstance(module, PackedLinear | SharedInputLinear):
            numel = module.in_features * module.out_features
            count += numel
            size += numel * module.weight_dtype.itemsize
        for parameter in module.parameters(recurse=False):
            count += parameter.numel()
            size += parameter.numel() * parameter.element_size()
    return count, size


def weight_bytes(model: Any) -> int:
    return decode_weights(model)[1]


def copy_bandwidth_bytes_per_s(device: Any, size_bytes: int = 1 << 29, repeats: int = 5) -> float:
    """Median bytes moved per second by ``dst.copy_(src)`` on ``device`` (each byte read and written)."""
    import torch

    source = torch.empty(size_bytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up: page faults and allocator
    rates = []
    for _ in range(repeats):
        _synchronize(device)
        started = time.perf_counter()
        target.copy_(source)
        _synchronize(device)
        rates.append(2 * size_bytes / (time.perf_counter() - started))
    return statistics.median(rates)


def memory_bound(model: Any, device: Any, raw_tokens_per_s: float | None = None) -> dict[str, Any]:
    """Weight bytes, measured bandwidth, the decode bound, and raw generate's fraction of it."""
    weights = weight_bytes(model)
    bandwidth = copy_bandwidth_bytes_per_s(device)
    bound = bandwidth / weights
    return {
        "device": str(device),
        "weight_bytes": weights,
        "bandwidth_bytes_per_s": bandwidth,
        "bound_tokens_per_s": bound,
        "raw_fraction_of_bound": None if raw_tokens_per_s is None else raw_tokens_per_s / bound,
    }


def _synchronize(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)
