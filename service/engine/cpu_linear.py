"""Linear layers with their weights reordered once for oneDNN, on CPUs.

A decode step multiplies a few rows by every weight matrix, so it is bound by how fast the
weights stream from memory. ``torch.nn.functional.linear`` (MKL, row-major weights) reaches a
third of this machine's read bandwidth there; the same matrices reordered into oneDNN's blocked
layout reach about twice that (SmolLM2-135M's linear layers at 8 rows, 2 threads: 68 ms against
30 ms per step; ``docs/performance.md``). vLLM's CPU backend does the same
(vllm/model_executor/layers/utils.py, ``dispatch_cpu_unquantized_gemm``: ``onednn_mm``); here
with torch's own ops, the ones inductor's freezing pass emits for a frozen linear layer.

Sibling projections of one input (q/k/v, gate/up) are packed as one matrix, as vLLM's
QKVParallelLinear and MergedColumnParallelLinear are: one wider GEMM instead of three or two
(a batch-1 step 44.2 -> 40.7 ms on SmolLM2-135M, 2 threads; batch 8 44.8 -> 43.7).

The sums run in another order, so logits differ from the unpacked model's in the last bits
(about 1e-4 on SmolLM2's); greedy text can part ways after many tokens, as it does between
any two BLAS libraries.
"""

from __future__ import annotations

import logging

import torch

from service.engine.gemv_kernel import few_rows_linear
from service.engine.linear_paths import KERNEL, MKL, ONEDNN, LinearPaths, measure_paths

logger = logging.getLogger(__name__)

_PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


class PackedLinear(torch.nn.Module):
    """``torch.nn.Linear``'s forward on a oneDNN-reordered copy of its weight."""

    def __init__(self, linear: torch.nn.Linear, paths: LinearPaths | None = None) -> None:
        """``paths``: also keep the row-major weight, for the kernel or MKL at a few rows, as the
        table says (float32 only; service.engine.linear_paths)."""
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_dtype = linear.weight.dtype
        # batch_size None: a layout for any number of rows (decode steps and prefills alike).
        packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.bias = linear.bias
        self.row_major = _RowMajor.of(linear.weight.detach(), linear.bias, paths)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.run(hidden, _path(hidden, self.row_major))

    def run(self, hidden: torch.Tensor, path: str) -> torch.Tensor:
        """The output by ``path`` (service.engine.linear_paths); oneDNN's without row-major weights."""
        if self.row_major is not None and path != ONEDNN:
            return self.row_major.linear(hidden, path)
        return torch.ops.mkldnn._linear_pointwise(hidden, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn"


class PackedProjections(torch.nn.Module):
    """Several linear layers that read the same input, as one packed matrix (see SharedInputLinear)."""

    def __init__(self, linears: list[torch.nn.Linear], paths: LinearPaths | None = None) -> None:
        super().__init__()
        weight = torch.cat([linear.weight.detach() for linear in linears])
        self.in_features = weight.shape[1]
        biases = [linear.bias for linear in linears]
        bias = None if all(b is None for b in biases) else torch.cat([_bias_of(linear) for linear in linears])
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        self.row_major = _RowMajor.of(weight, bias, paths)
        # The last (input, output): the members are called one after another on the same tensor.
        # One tuple, swapped whole, so that another thread's call can never pair them wrongly.
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        last = self._last
        if last is not None and last[0] is hidden:
            return last[1]
        output = self.run(hidden, _path(hidden, self.row_major))
        self._last = (hidden, output)
        return output

    def run(self, hidden: torch.Tensor, path: str) -> torch.Tensor:
        """The packed product by ``path`` (service.engine.linear_paths), not remembered."""
        if self.row_major is not None and path != ONEDNN:
            return self.row_major.linear(hidden, path)
        return torch.ops.mkldnn._linear_pointwise(hidden, self.packed_weight, self.bias, "none", [], "")


class _RowMajor:
    """A linear layer's weight as it is, row-major, for the paths at a few rows that read it:
    service.engine.gemv_kernel's and MKL's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, paths: LinearPaths) -> None:
        self.weight, self.bias, self.paths = weight, bias, paths
        self.kernel_bias = torch.zeros(weight.shape[0]) if bias is None else bias  # the kernel adds one

    @classmethod
    def of(
        cls, weight: torch.Tensor, bias: torch.Tensor | None, paths: LinearPaths | None
    ) -> _RowMajor | None:
        """Kept given ``paths`` and float32 (the kernel's); else None, and the weight can go."""
        if paths is None or weight.dtype != torch.float32:
            return None
        return cls(weight.contiguous(), None if bias is None else bias.detach().contiguous(), paths)

    def linear(self, hidden: torch.Tensor, path: str) -> torch.Tensor:
        if path == KERNEL:
            return few_rows_linear(hidden, self.weight, self.kernel_bias)
        assert path == MKL, path
        return torch.nn.functional.linear(hidden, self.weight, self.bias)


def _path(hidden: torch.Tensor, rows: _RowMajor | None) -> str:
    """The path for ``hidden``'s rows: the measured table's where row-major weights are kept."""
    if rows is None or hidden.dtype != torch.float32:
        return ONEDNN
    return rows.paths.for_rows(hidden.numel() // hidden.shape[-1])


class SharedInputLinear(torch.nn.Module):
    """One of a :class:`PackedProjections`' layers: its columns of the shared product.

    The first member called on a tensor computes every member's output; the others, called
    next on the very same tensor object (the attention's q, k, v; the MLP's gate, up), take
    their columns of it. A different tensor (or the same one after another call) is computed
    anew, so a model that calls them otherwise still gets right answers, only no saving.
    """

    def __init__(self, projections: PackedProjections, start: int, end: int, like: torch.nn.Linear) -> None:
        super().__init__()
        self.projections = [projections]  # a list: not registered twice as a submodule
        self.start, self.end = start, end
        self.in_features, self.out_features = like.in_features, like.out_features
        self.weight_dtype = like.weight.dtype

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.projections[0].project(hidden)[..., self.start : self.end]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn, shared input"


# Sibling layers that read one input in the models transformers ships (Llama, Mistral, Qwen, ...).
_SHARED_INPUT_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _bias_of(linear: torch.nn.Linear) -> torch.Tensor:
    if linear.bias is None:
        return torch.zeros(linear.out_features, dtype=linear.weight.dtype, device=linear.weight.device)
    return linear.bias.detach()


def _pack_shared_inputs(model: torch.nn.Module, paths: LinearPaths | None) -> int:
    """Replace each group of sibling projections by :class:`SharedInputLinear` members; returns
    how many layers were replaced."""
    replaced = 0
    for module in list(model.modules()):
        for names in _SHARED_INPUT_GROUPS:
            linears = [getattr(module, name, None) for name in names]
            if not all(type(linear) is torch.nn.Linear for linear in linears):
                continue
            group = [linear for linear in linears if isinstance(linear, torch.nn.Linear)]
            if len({linear.in_features for linear in group}) != 1:
                continue
            projections = PackedProjections(group, paths)
            module.add_module(f"{names[0]}_packed_with_siblings", projections)
            start = 0
            for name, linear in zip(names, group, strict=True):
                end = start + linear.out_features
                setattr(module, name, SharedInputLinear(projections, start, end, linear))
                start = end
            replaced += len(group)
    return replaced


def packing_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether this torch build can pack linear weights for ``device`` and ``dtype``."""
    return (
        device.type == "cpu"
        and dtype in _PACKABLE_DTYPES
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and (dtype != torch.bfloat16 or _bf16_kernels())
    )


def _bf16_kernels() -> bool:
    """Whether oneDNN has bfloat16 kernels on this CPU: it refuses to reorder bfloat16 weights
    without AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT (an AVX2-only AMD EPYC has neither)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pack_linear_layers(model: torch.nn.Module, few_rows_paths: bool = False) -> int:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`PackedLinear`; returns how many.

    The unpacked weights go once nothing else holds them; a weight tied to the embedding
    (SmolLM2's lm_head) stays for the embedding, and its packed copy is added. With
    ``few_rows_paths`` (float32) they stay too, for the paths at a few rows that read them
    (service.engine.linear_paths; :func:`choose_paths` measures which): the weights' memory
    twice over.
    """
    paths = LinearPaths() if few_rows_paths else None
    shared = _pack_shared_inputs(model, paths)
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear
    ]
    for parent, name, child in targets:
        setattr(parent, name, PackedLinear(child, paths))
    packed = shared + len(targets)
    logger.info("packed %d linear layers for oneDNN (%d of them sharing an input)", packed, shared)
    return packed


def choose_paths(model: torch.nn.Module) -> dict[int, dict[str, float]] | None:
    """Measure which path each number of rows runs (service.engine.linear_paths.measure_paths)
    over the packed layers that keep row-major weights; None if none do."""
    layers = _with_row_major(model)
    return measure_paths(layers[0][1].paths, [layer for layer, _ in layers]) if layers else None


def linear_paths(model: torch.nn.Module) -> LinearPaths | None:
    """The table of paths ``model``'s packed layers share, if they keep row-major weights."""
    layers = _with_row_major(model)
    return layers[0][1].paths if layers else None


def _with_row_major(model: torch.nn.Module) -> list[tuple[PackedLinear | PackedProjections, _RowMajor]]:
    return [
        (module, module.row_major)
        for module in model.modules()
        if isinstance(module, PackedLinear | PackedProjections) and module.row_major is not None
    ]
