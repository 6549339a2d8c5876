"""scripts/measure_hostile.py runs against a live server and prints both measurements (small sizes)."""

from __future__ import annotations

import pytest

from scripts import measure_hostile


def test_it_measures_refusals_and_endless_headers(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    measure_hostile.main(
        [server_url, "--prompts", "2", "--prompt-mb", "0.1", "--stream-tokens", "64", "--probes", "3"]
    )

    printed = capsys.readouterr().out
    assert "statuses [400]" in printed
    assert "over 3 probes" in printed
