"""oneDNN-packed linear layers: the same model, the same numbers to float32 rounding, on the
real model and tiny-random, and off with --no-pack-weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.engine.cpu_linear import (
    PackedLinear,
    PackedProjections,
    SharedInputLinear,
    pack_linear_layers,
    packing_supported,
)
from service.engine.loader import load_model
from service.settings import Settings

pytestmark = pytest.mark.skipif(
    not packing_supported(torch.device("cpu"), torch.float32), reason="this torch build has no oneDNN"
)


def _linear_types(model: torch.nn.Module) -> set[type]:
    kinds = torch.nn.Linear | PackedLinear | SharedInputLinear
    return {type(module) for module in model.modules() if isinstance(module, kinds)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_packed_layers_give_the_unpacked_logits(
    real_model_cache_dir: Path, smollm2_dir: Path, dtype: str
) -> None:
    if not packing_supported(torch.device("cpu"), getattr(torch, dtype)):
        pytest.skip(f"oneDNN cannot pack {dtype} weights on this CPU (the next test covers that case)")
    loaded = load_model(
        Settings(model="smollm2-135m", cache_dir=real_model_cache_dir, dtype=dtype, pack_weights=False)
    )
    prompt = "The capital of France is Paris, and the capital of Italy is"
    ids = torch.tensor([loaded.tokenizer.encode(prompt)])
    with torch.inference_mode():
        before = loaded.model(ids).logits.float()
        packed = pack_linear_layers(loaded.model)
        after = loaded.model(ids).logits.float()

    assert packed == 30 * 7 + 1  # q, k, v, o, gate, up, down in 30 layers; lm_head
    assert _linear_types(loaded.model) == {PackedLinear, SharedInputLinear}
    attention = loaded.model.model.layers[0].self_attn
    assert isinstance(attention.k_proj, SharedInputLinear)  # q, k, v: one GEMM
    assert isinstance(attention.o_proj, PackedLinear)
    # float32: the same sums in another order; bfloat16: its 8-bit mantissa.
    tolerance = 1e-3 if dtype == "float32" else 0.5
    assert (before - after).abs().max().item() < tolerance
    assert torch.equal(before.argmax(-1), after.argmax(-1))


@pytest.mark.skipif(
    torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has oneDNN's bfloat16 kernels"
)
def test_bfloat16_weights_stay_unpacked_where_onednn_has_no_bfloat16_kernels(model_cache_dir: Path) -> None:
    """An AVX2-only CPU: oneDNN refuses to reorder bfloat16 weights, so they stay nn.Linear and run."""
    assert packing_supported(torch.device("cpu"), torch.float32)
    assert not packing_supported(torch.device("cpu"), torch.bfloat16)
    loaded = load_model(Settings(model="tiny-random", cache_dir=model_cache_dir, dtype="bfloat16"))

    assert _linear_types(loaded.model) == {torch.nn.Linear}
    with torch.inference_mode():
        assert torch.isfinite(loaded.model(torch.tensor([[1, 2, 3, 4, 5]])).logits).all()


def test_the_loader_packs_by_default_and_not_when_told(model_cache_dir: Path) -> None:
    packed = load_model(Settings(model="tiny-random", cache_dir=model_cache_dir))
    plain = load_model(Settings(model="tiny-random", cache_dir=model_cache_dir, pack_weights=False))

    assert _linear_types(packed.model) == {PackedLinear, SharedInputLinear}
    assert _linear_types(plain.model) == {torch.nn.Linear}
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.inference_mode():
        assert torch.allclose(packed.model(ids).logits, plain.model(ids).logits, atol=1e-4)


def test_only_cpu_float32_and_bfloat16_are_packed() -> None:
    assert not packing_supported(torch.device("cpu"), torch.float16)
    assert not packing_supported(torch.device("cuda"), torch.float32)


def test_siblings_share_one_product_per_input_and_recompute_for_another() -> None:
    torch.manual_seed(0)
    q, k = torch.nn.Linear(8, 6, bias=True), torch.nn.Linear(8, 2, bias=False)
    projections = PackedProjections([q, k])
    q_packed, k_packed = SharedInputLinear(projections, 0, 6, q), SharedInputLinear(projections, 6, 8, k)
    first, second = torch.randn(3, 8), torch.randn(3, 8)

    with torch.inference_mode():
        q_first, k_first = q_packed(first), k_packed(first)
        k_second = k_packed(second)  # another tensor: computed anew, not the cached product
        expected = (q(first), k(first), k(second))

    # One GEMM for both members: their outputs are columns of one tensor.
    assert q_first.untyped_storage().data_ptr() == k_first.untyped_storage().data_ptr()
    assert k_second.untyped_storage().data_ptr() != k_first.untyped_storage().data_ptr()
    for got, want in zip((q_first, k_first, k_second), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
