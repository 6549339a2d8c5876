"""The single-stream benchmark's in-process part runs on the tiny model (numbers not judged here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.bench.stream import in_process


def test_in_process_measures_raw_ours_and_stock(
    model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_DIR", str(model_cache_dir))

    tokens_per_s = in_process("tiny-random", threads=1, tokens=8, repeats=1)

    assert set(tokens_per_s) == {"raw", "ours", "stock"}
    assert all(value > 0 for value in tokens_per_s.values())
