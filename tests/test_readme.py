"""The README and the docs pages document what the code does; the README's commands run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from scripts.docs_index import index_from_readme
from scripts.settings_table import settings_table
from service.errors import error_code_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_settings_table_matches_the_settings_class() -> None:
    page = (DOCS / "settings.md").read_text()
    assert settings_table() in page, (
        "regenerate with: python scripts/settings_table.py --write docs/settings.md"
    )


def test_error_code_table_matches_the_error_codes() -> None:
    assert error_code_table() in (DOCS / "api.md").read_text(), "paste error_code_table() into docs/api.md"


def test_the_docs_home_page_is_the_readme() -> None:
    assert (DOCS / "index.md").read_text() == index_from_readme(README), "run python scripts/docs_index.py"


def test_the_readme_is_a_first_screen_and_a_map() -> None:
    assert len(README.splitlines()) <= 150
    for page in ("architecture", "api", "settings", "deploying", "production", "performance", "load-testing"):
        assert f"](docs/{page}.md)" in README


def test_set_up_is_make_run_and_make_test() -> None:
    assert "make run" in README
    assert "make test" in README
    assert "curl -N" in README


def test_the_readmes_curl_command_answers_as_shown(real_server_url: str) -> None:
    (block,) = [b for b in code_blocks(README, "bash") if b.startswith("curl -N")]
    command = block.replace("http://127.0.0.1:8000", real_server_url)

    shown = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True
    ).stdout

    texts = re.findall(r'data: \{"text":"([^"]*)"\}', shown)
    assert "".join(texts) == "The capital of France is Paris."
    assert '"finish_reason":"stop"' in shown


def test_the_readmes_openai_example_prints_the_answer(real_server_url: str) -> None:
    (block,) = code_blocks(README, "python")
    program = block.replace("http://127.0.0.1:8000", real_server_url)

    printed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    ).stdout

    assert printed.strip() == "The capital of France is Paris."
    assert httpx.get(f"{real_server_url}/ready").status_code == 200
