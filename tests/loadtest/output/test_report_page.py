"""report.html in a real browser (tests/browser.py): it renders offline, its plots decode,
and the page is not blank."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from loadtest import cli


def test_the_report_page_renders_its_plots_from_one_file(
    server_url: str, tmp_path: Path, open_page: Any
) -> None:
    arguments = ["--url", server_url, "--out", str(tmp_path), "--requests", "4", "--cold", "1"]
    # On a thread of its own: the browser's (sync) Playwright already runs an event loop here.
    with ThreadPoolExecutor(1) as thread:
        status = thread.submit(cli.main, [*arguments, "--max-tokens", "8"]).result()
    assert status == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "report.html").write_bytes((tmp_path / "report.html").read_bytes())  # no PNGs beside it

    page = open_page((alone / "report.html").as_uri(), offline=True)

    assert page.locator("h1").inner_text().startswith("Load test: local")
    widths = page.eval_on_selector_all("img", "images => images.map(image => image.naturalWidth)")
    assert len(widths) == 3
    assert all(width > 100 for width in widths)
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    colors = shot.getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 50, "the page rendered (nearly) blank"
