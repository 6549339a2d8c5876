"""The prompts a run sends: ours (prompts.txt, 30 code-assistant questions) or a file of yours."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PROMPTS_FILE = Path(__file__).with_name("prompts.txt")


def load_prompts(path: Path = DEFAULT_PROMPTS_FILE) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped.

    Raises ValueError when the file holds no prompt.
    """
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def prompt_for(prompts: list[str], request_index: int) -> tuple[int, str]:
    """Request i sends prompt i, wrapping around when there are more requests than prompts."""
    prompt_index = request_index % len(prompts)
    return prompt_index, prompts[prompt_index]
