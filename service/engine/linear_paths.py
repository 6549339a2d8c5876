"""Which kernel a CPU linear layer runs at a few rows, measured once at load on this machine.

A decode step at a few rows is bound by streaming the weights, and which kernel streams them
fastest depends on the CPU. On the 2-core AMD EPYC hosts (Zen3, Zen4) our numba kernel
(service.engine.gemv_kernel) beat oneDNN's at 1-4 rows; on a 2-core Intel Xeon with AMX it is
the slowest of three, and MKL's (torch's ``F.linear`` on the row-major weights) the fastest at
1-2 rows: SmolLM2-135M's 30 layers, 2 threads, at 1 row kernel 28.3, oneDNN 24.8, MKL 19.4 ms;
at 4 rows 29.3, 22.2 and 29.8 ms (docs/performance.md). So no fixed rule: the loader times the
paths on the model's own layers at each of :data:`ROW_BUCKETS` rows, interleaved, and every
layer then runs the fastest for its number of rows; past the last bucket, oneDNN's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import torch

from service.engine.gemv_kernel import MAX_ROWS as KERNEL_MAX_ROWS

logger = logging.getLogger(__name__)

ONEDNN, KERNEL, MKL = "onednn", "kernel", "mkl"
# Rows the choice is measured at; a step of 3 rows takes the choice for 4.
ROW_BUCKETS = (1, 2, 4, 8, 16)


class LinearPaths:
    """The path per number of rows, one table shared by a model's packed layers. Until measured:
    the kernel up to :data:`KERNEL_MAX_ROWS` rows, oneDNN past them."""

    def __init__(self) -> None:
        self.by_bucket = {bucket: KERNEL if bucket <= KERNEL_MAX_ROWS else ONEDNN for bucket in ROW_BUCKETS}

    def for_rows(self, rows: int) -> str:
        for bucket in ROW_BUCKETS:
            if rows <= bucket:
                return self.by_bucket[bucket]
        return ONEDNN


class RunsPaths(Protocol):
    """A packed layer (service.engine.cpu_linear) that computes its output by a named path."""

    in_features: int

    def run(self, hidden: torch.Tensor, path: str) -> torch.Tensor: ...


def measure_paths(
    paths: LinearPaths, layers: Sequence[RunsPaths], repeats: int = 2
) -> dict[int, dict[str, float]]:
    """Time every candidate path over all ``layers`` at each bucket's rows (their weights stream
    from memory as in a decode step: together they are larger than the caches), interleaved
    ``repeats`` times after a warm-up (numba compiles the kernel on its first call), and set each
    bucket's path to the fastest by its best time. Returns the best times, in seconds."""
    measured: dict[int, dict[str, float]] = {}
    widths = {layer.in_features for layer in layers}
    for bucket in ROW_BUCKETS:
        inputs = {width: torch.randn(bucket, width) for width in widths}
        candidates = [ONEDNN, MKL] + ([KERNEL] if bucket <= KERNEL_MAX_ROWS else [])
        best = dict.fromkeys(candidates, float("inf"))
        with torch.inference_mode():
            for repeat in range(repeats + 1):
                for path in candidates:
                    started = time.perf_counter()
                    for layer in layers:
                        layer.run(inputs[layer.in_features], path)
                    if repeat:  # the first is the warm-up
                        best[path] = min(best[path], time.perf_counter() - started)
        paths.by_bucket[bucket] = min(candidates, key=best.__getitem__)
        measured[bucket] = best
    logger.info(
        "linear layers' path by rows, measured: %s",
        "; ".join(
            f"{bucket}: {paths.by_bucket[bucket]} ("
            + ", ".join(f"{path} {seconds * 1e3:.1f} ms" for path, seconds in times.items())
            + ")"
            for bucket, times in measured.items()
        ),
    )
    return measured
