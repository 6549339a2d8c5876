"""Print the settings table of docs/settings.md from the Settings class (so the two cannot drift)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import AliasChoices

from service.settings import Settings

# Defaults that depend on the machine or the process, shown as words.
_DEFAULTS_SHOWN = {
    "cache_dir": "~/.cache/llm-serving",
    "served_model_name": "the model id",
    "instance_id": "random per process",
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


def write_into(readme: Path) -> None:
    """Replace the table in ``readme`` (from its header row to the next blank line)."""
    text = readme.read_text()
    start = text.index("| Flag | Env var |")
    end = text.find("\n\n", start)
    end = len(text.rstrip("\n")) if end < 0 else end
    readme.write_text(text[:start] + settings_table() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_into(Path(sys.argv[2]))
    else:
        print(settings_table())
