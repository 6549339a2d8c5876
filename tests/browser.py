"""A real browser for tests: Debian's Chromium driven by Playwright (Playwright's own browser
download needs the internet). ``make browser`` installs it; ``make test`` runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: run make browser (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``open_page(url, expected_statuses=(), **context_options)``: a fresh page; the test fails
    on any console error or uncaught page error. Chromium logs every failed HTTP response as a
    console error: a test that provokes one names its status in ``expected_statuses``."""
    contexts: list[Any] = []
    problems: list[str] = []

    def open_(url: str, expected_statuses: tuple[int, ...] = (), **context_options: Any) -> Any:
        context = browser.new_context(**context_options)
        contexts.append(context)
        page = context.new_page()
        expected = tuple(f"status of {status} " for status in expected_statuses)

        def on_console(message: Any) -> None:
            if message.type == "error" and not any(status in message.text for status in expected):
                problems.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, problems
