"""The search for the highest level meeting the objectives, on a known limit."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.driver.search import highest_passing, write_search


def test_concurrency_doubles_then_bisects_to_the_exact_limit() -> None:
    outcome = highest_passing(lambda level: level <= 11, start=1, maximum=64, integer=True)

    assert outcome.best == 11
    assert [level for level, _ in outcome.probes] == [1, 2, 4, 8, 16, 12, 10, 11]


def test_a_rate_is_found_to_within_ten_percent() -> None:
    outcome = highest_passing(lambda rate: rate <= 3.3, start=0.5, maximum=100, integer=False)

    assert outcome.best is not None
    assert 3.0 <= outcome.best <= 3.3


def test_the_ends_say_what_they_mean(tmp_path: Path) -> None:
    never = highest_passing(lambda level: False, start=1, maximum=64, integer=True)
    always = highest_passing(lambda level: True, start=1, maximum=40, integer=True)

    assert never.best is None
    assert always.best == 40
    assert always.reached_maximum
    assert [level for level, _ in always.probes] == [1, 2, 4, 8, 16, 32, 40]
    assert "limit is higher" in write_search(tmp_path, "concurrency", "ttft=1", always)
    assert json.loads((tmp_path / "search.json").read_text())["best"] == 40
