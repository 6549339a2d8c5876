"""Print the flag tables of docs/settings.md (from the service's Settings class) and
docs/load-testing.md (from the load tester's LoadTestOptions), so neither can drift.

    python scripts/settings_table.py [--write docs/settings.md]
    python scripts/settings_table.py --loadtest [--write docs/load-testing.md]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import AliasChoices

from loadtest.options import LoadTestOptions
from service.settings import Settings

# Defaults that depend on the machine or the process, shown as words.
_DEFAULTS_SHOWN = {
    "cache_dir": "~/.cache/llm-serving",
    "served_model_name": "the model id",
    "instance_id": "random per process",
    "prompts": "loadtest/traffic/prompts.txt",
}


def settings_table() -> str:
    rows = ["| Flag | Env var | Default | Description |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        env = name.upper()
        if isinstance(field.validation_alias, AliasChoices):
            env = str(field.validation_alias.choices[-1]).upper()
        default_text = _DEFAULTS_SHOWN.get(name, field.get_default(call_default_factory=True))
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `--{name.replace('_', '-')}` | `{env}` | `{default_text}` | {description} |")
    return "\n".join(rows)


def loadtest_options_table() -> str:
    rows = ["| Flag | Default | Description |", "| --- | --- | --- |"]
    for name, field in LoadTestOptions.model_fields.items():
        default = _DEFAULTS_SHOWN.get(name, field.get_default(call_default_factory=True))
        default_text = "" if default in (None, []) else f"`{default}`"
        description = (field.description or "").replace("|", "\\|")
        flag = name.replace("_", "-")
        flags = f"`--{flag}`, `--no-{flag}`" if field.annotation is bool else f"`--{flag}`"
        rows.append(f"| {flags} | {default_text} | {description} |")
    return "\n".join(rows)


def write_into(page: Path, table: str) -> None:
    """Replace the table in ``page`` that has ``table``'s header row (up to the next blank line)."""
    text = page.read_text()
    start = text.index(table.splitlines()[0])
    end = text.find("\n\n", start)
    end = len(text.rstrip("\n")) if end < 0 else end
    page.write_text(text[:start] + table + text[end:])


if __name__ == "__main__":
    arguments = sys.argv[1:]
    table = loadtest_options_table() if "--loadtest" in arguments else settings_table()
    if "--write" in arguments:
        write_into(Path(arguments[arguments.index("--write") + 1]), table)
    else:
        print(table)
