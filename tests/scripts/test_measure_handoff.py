"""scripts/measure_handoff.py runs its three variants (on the tiny model: the ratios mean nothing here)."""

from __future__ import annotations

from pathlib import Path

from scripts.measure_handoff import measure


def test_every_variant_is_measured(model_cache_dir: Path) -> None:
    rates = measure("tiny-random", tokens=8, rounds=1, threads=1, cache_dir=model_cache_dir)

    assert set(rates) == {"raw", "streamer", "handoff"}
    assert all(rate > 0 for rate in rates.values())
