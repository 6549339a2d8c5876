"""End to end: bench_engine.py on tiny-random against our sequential server, tiny token counts.

transformers serve is skipped (--no-transformers-serve): starting it twice would double
the test's time, and its flags are pinned by test_servers. About 7 s, so not marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.bench.engine import main


def test_a_small_run_measures_raw_and_served_and_writes_json_and_markdown(
    tmp_path: Path, model_cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    argv = ["--model", "tiny-random", "--cache-dir", str(model_cache_dir), "--tokens", "4"]
    argv += ["--concurrency", "1,2", "--single-repeats", "2", "--engines", "sequential"]
    argv += ["--no-transformers-serve", "--out", str(out), "--stem", "smoke"]

    assert main(argv) == 0

    results = json.loads((out / "smoke.json").read_text())
    sequential = results["servers"]["sequential"]
    assert sequential["available"]
    assert sequential["single_stream"]["served_over_raw"] > 0
    assert sequential["single_stream"]["wrong_length"] == 0
    assert [level["concurrency"] for level in sequential["levels"]] == [1, 2]
    assert all(level["failed"] == 0 and level["wrong_length"] == 0 for level in sequential["levels"])
    assert results["raw"]["tokens_per_s"] > 0
    assert "| sequential | 2 |" in (out / "smoke.md").read_text()
    assert "targets:" in capsys.readouterr().out
