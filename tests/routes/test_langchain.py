"""LangChain's ChatOpenAI, unmodified, against the real model: structured output and tools.

LangChain stays out of the project's lock (as every client the project did not write):
it runs in a venv of its own, built once from PyPI into the user's cache and reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LANGCHAIN = "langchain-openai==1.7.4"
CLIENT = Path(__file__).parents[1] / "clients" / "langchain_client.py"


@pytest.fixture(scope="session")
def langchain_python(real_model_cache_dir: Path) -> Path:
    venv = real_model_cache_dir / "client-venvs" / LANGCHAIN.replace("==", "-")
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", LANGCHAIN], check=True, timeout=600)
    return python


@pytest.mark.slow
def test_with_structured_output_and_bind_tools(langchain_python: Path, real_server_url: str) -> None:
    result = subprocess.run(
        [str(langchain_python), str(CLIENT), f"{real_server_url}/v1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["structured"]["city"] == "Paris"  # with_structured_output's default: a json_schema
    assert answers["tool_call"] == {"name": "GetWeather", "args": {"city": "Paris"}}
    assert "21" in answers["final"]  # the answer after the tool's result read it
