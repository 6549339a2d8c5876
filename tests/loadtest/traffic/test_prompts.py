"""The prompts that ship with the load tester, and prompt files of one's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.traffic.prompts import load_prompts, prompt_for


def test_thirty_distinct_prompts_ship_with_it() -> None:
    prompts = load_prompts()

    assert len(prompts) == 30
    assert len(set(prompts)) == 30


def test_a_prompt_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("# mine\n\nfirst\n  second  \n")

    assert load_prompts(path) == ["first", "second"]


def test_an_empty_prompt_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("# nothing\n")

    with pytest.raises(ValueError, match="no prompts"):
        load_prompts(path)


def test_more_requests_than_prompts_wrap_around() -> None:
    assert prompt_for(["a", "b"], 3) == (1, "b")
