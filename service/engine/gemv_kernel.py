"""A linear layer for a few rows on CPUs: a numba kernel that streams row-major weights.

A decode step at one to a few rows is bound by reading the weights. oneDNN's GEMM
(service.engine.cpu_linear) reads them at 19-25 GB/s there on the 2-core AVX2 EPYC, where a
copy moves 47 GB/s; this kernel, one dot product per output in parallel over blocks of
outputs, at 24-33 GB/s: SmolLM2-135M's 30 layers' weights (without lm_head) at 1 row 17.2
against 13.0 ms, 2 rows 20.0 against 14.3, 4 rows 21.9 against 18.0 (cold weights, medians of
15). From 8 rows on the GEMM's blocking wins, so the kernel takes up to :data:`MAX_ROWS`. On
other CPUs oneDNN or MKL stream faster: service.engine.linear_paths measures which at load.

The sums run in another order than oneDNN's: outputs within float rounding of it
(tests/engine/test_gemv_kernel.py).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from service.engine.decode_kernels import FASTMATH, use_torch_threads

# Rows up to which a float32 CPU linear layer runs here (module docstring).
MAX_ROWS = 4
# Outputs per parallel task: enough to keep a thread streaming, few enough to balance two.
_BLOCK = 32


@numba.njit(parallel=True, fastmath=FASTMATH, nogil=True, cache=True)
def _gemv(  # pragma: no cover (compiled: numba runs it, coverage cannot see it)
    hidden: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray
) -> None:
    rows, width = hidden.shape
    outputs = weight.shape[0]
    for block in numba.prange((outputs + _BLOCK - 1) // _BLOCK):
        for output in range(block * _BLOCK, min(outputs, (block + 1) * _BLOCK)):
            weights = weight[output]
            for row in range(rows):
                inputs = hidden[row]
                total = np.float32(0.0)
                for i in range(width):
                    total += inputs[i] * weights[i]
                out[row, output] = total + bias[output]


def few_rows_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``hidden @ weight.T + bias`` for float32 ``hidden`` [..., in] of at most MAX_ROWS rows,
    ``weight`` [out, in] contiguous, ``bias`` [out] (zeros for a layer without one)."""
    use_torch_threads()
    flat = hidden.reshape(-1, hidden.shape[-1]).contiguous()
    out = hidden.new_empty((flat.shape[0], weight.shape[0]))
    _gemv(flat.numpy(), weight.numpy(), bias.numpy(), out.numpy())
    return out.view(*hidden.shape[:-1], weight.shape[0])
