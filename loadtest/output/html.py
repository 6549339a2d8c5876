"""report.html and compare.html: the markdown reports as single self-contained pages.

The markdown is the one source (Python-Markdown renders it); each plot it links is read
from the run's directory and inlined as a data URI, so the page opens from a mail, a CI
artifact or a laptop with no network and no files beside it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

# Plain and readable on a phone; no external fonts or scripts.
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 0 auto; padding: 1rem; color: #1b1b1b; }
table { border-collapse: collapse; font-size: 0.85rem; display: block; overflow-x: auto; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5rem 0; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""
_IMAGE = re.compile(r'<img alt="(?P<alt>[^"]*)" src="(?P<src>[^":/]+\.png)" ?/?>')


def render_html(markdown_text: str, title: str, images_dir: Path) -> str:
    """The page for ``markdown_text``; PNGs it links by bare file name are read from ``images_dir``."""
    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")

    def inline(match: re.Match[str]) -> str:
        path = images_dir / match["src"]
        if not path.is_file():
            return match[0]
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="{match["alt"]}" src="data:image/png;base64,{data}">'

    body = _IMAGE.sub(inline, body)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_html(markdown_text: str, title: str, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    path.write_text(render_html(markdown_text, title, out_dir), encoding="utf-8")
    return path
