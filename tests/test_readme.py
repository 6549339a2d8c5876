"""The README documents what the code does."""

from __future__ import annotations

from pathlib import Path

from scripts.settings_table import settings_table
from service.errors import error_code_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_settings_table_matches_the_settings_class() -> None:
    assert settings_table() in README, "regenerate with: python scripts/settings_table.py --write README.md"


def test_error_code_table_matches_the_error_codes() -> None:
    assert error_code_table() in README, "paste service.errors.error_code_table() into README.md"


def test_set_up_is_make_run_and_make_test() -> None:
    assert "make run" in README
    assert "make test" in README
    assert "curl -N" in README
