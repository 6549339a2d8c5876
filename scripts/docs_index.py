"""Write docs/index.md, the docs site's home page, from README.md (so the two cannot drift).

    python scripts/docs_index.py          # rewrite docs/index.md

The README links pages as ``docs/x.md``; on the site they sit beside the index.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTE = "<!-- Generated from README.md by scripts/docs_index.py: edit the README. -->\n"


def index_from_readme(readme: str) -> str:
    text = re.sub(r"\]\(docs/", "](", readme)
    text = text.replace("](bench/)", "](bench/engine-bench-cpu.md)")
    return NOTE + text


def main() -> None:
    (ROOT / "docs" / "index.md").write_text(index_from_readme((ROOT / "README.md").read_text()))


if __name__ == "__main__":
    main()
