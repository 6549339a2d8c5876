"""scripts/measure_forward.py measures both forwards on the tiny model (its numbers mean nothing)."""

from __future__ import annotations

from pathlib import Path

from scripts.measure_forward import measure


def test_decode_and_prefill_are_measured_on_both_forwards(model_cache_dir: Path) -> None:
    results = measure("tiny-random", threads=1, rows_levels=[1, 3], steps=4, cache_dir=str(model_cache_dir))

    decode = {key for key in results if key.startswith("decode ")}
    prefill = [key for key in results if key.startswith("prefill ")]
    assert decode == {"decode 1 rows", "decode 3 rows"}
    assert len(prefill) == 1
    for found in results.values():
        assert found["transformers"] > 0
        assert found["ours"] > 0
    assert results["decode 3 rows"]["logit_difference"] < 1e-3


def test_the_baseline_can_be_our_forward_without_its_decode_kernels(model_cache_dir: Path) -> None:
    """tiny-random is a Llama on packed weights: both sides run our forward, one with SDPA."""
    results = measure(
        "tiny-random", threads=1, rows_levels=[2], steps=4, cache_dir=str(model_cache_dir), baseline="sdpa"
    )

    assert results["decode 2 rows"]["transformers"] > 0
    assert results["decode 2 rows"]["logit_difference"] < 1e-4
