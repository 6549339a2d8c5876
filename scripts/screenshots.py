"""Screenshots for the docs, from the real thing: the playground chatting with the built-in
model, and the report.html of a short load test against it.

    python scripts/screenshots.py        # writes docs/playground.png and docs/load-test-report.png

Needs Debian's chromium (make browser) and the built-in model (built on first use).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loadtest.driver.spawn import spawn_server  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402


def main() -> None:
    command = f"{sys.executable} -m service --model smollm2-135m --log-level warning"
    with tempfile.TemporaryDirectory() as work, spawn_server(command, Path(work) / "server.log") as server:
        run_dir = Path(work) / "run"
        subprocess.run(
            [sys.executable, "-m", "loadtest", "--url", server.url, "--out", str(run_dir),
             "--requests", "8", "--cold", "2", "--max-tokens", "48"],
            cwd=REPO, check=True,
        )  # fmt: skip
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 900, "height": 760})
            page.goto(server.url + "/")
            page.get_by_text("model: smollm2-135m").wait_for()
            page.get_by_label("Temperature").fill("0")
            page.get_by_label("Message").fill("What is the capital of France? Answer in one sentence.")
            page.get_by_label("Message").press("Enter")
            page.locator(".turn.assistant .stats").wait_for(timeout=120_000)
            page.screenshot(path=REPO / "docs" / "playground.png", full_page=True)
            report = browser.new_page(viewport={"width": 1100, "height": 1400})
            report.goto((run_dir / "report.html").as_uri())
            report.screenshot(path=REPO / "docs" / "load-test-report.png")
            browser.close()
    print("wrote docs/playground.png and docs/load-test-report.png")


if __name__ == "__main__":
    main()
