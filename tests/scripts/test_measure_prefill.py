"""scripts/measure_prefill.py runs both scenarios on both loops (tiny model: numbers mean nothing)."""

from __future__ import annotations

from pathlib import Path

from scripts.measure_prefill import measure


def test_both_scenarios_are_measured_on_both_loops(model_cache_dir: Path) -> None:
    results = measure("tiny-random", long_tokens=120, rounds=1, chunk_tokens=32, cache_dir=model_cache_dir)

    assert set(results) == {"stall old", "stall new", "burst old", "burst new"}
    assert all(value > 0 for value in results.values())
