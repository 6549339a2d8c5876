"""The playground at / in a real browser: Debian's Chromium driven by Playwright, against a real
server on 127.0.0.1 (tiny-random: the page, not the model, is under test here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import serve


def playground_settings(model_cache_dir: Path, **overrides: Any) -> Settings:
    return Settings(model="tiny-random", cache_dir=model_cache_dir, engine="batched", **overrides)


@pytest.fixture(scope="module")
def playground_url(model_cache_dir: Path) -> Iterator[str]:
    with serve(create_app(playground_settings(model_cache_dir))) as url:
        yield url


def record_paints(page: Any) -> None:
    """From now on, record the newest answer's length at every change until its stats line
    appears; ``window.__paints`` resolves to the lengths."""
    page.evaluate(
        """() => { window.__paints = new Promise((resolve) => {
            const lengths = [];
            const observer = new MutationObserver(() => {
                const turns = document.querySelectorAll('.turn.assistant');
                const last = turns[turns.length - 1];
                if (!last) return;
                lengths.push(last.querySelector('.content').textContent.length);
                if (last.querySelector('.stats')) { observer.disconnect(); resolve(lengths); }
            });
            observer.observe(document.getElementById('conversation'),
                             {childList: true, subtree: true, characterData: true});
        }); }"""
    )


def test_a_message_streams_in_over_several_paints_with_its_stats(open_page: Any, playground_url: str) -> None:
    page = open_page(playground_url + "/")
    page.get_by_text("model: tiny-random").wait_for()
    page.get_by_label("Temperature").fill("0")  # greedy: the same 48 tokens every run, no early EOS
    page.get_by_label("Max tokens").fill("48")
    page.get_by_label("Message").fill("Hello there")
    record_paints(page)
    page.get_by_label("Message").press("Enter")
    lengths = page.evaluate("() => window.__paints")

    nonempty = sorted({length for length in lengths if length > 0})
    assert len(nonempty) > 1, f"the answer arrived in one paint: {lengths}"
    stats = page.locator(".turn.assistant .stats").inner_text()
    assert re.search(r"TTFT \d+ ms · 48 tokens · [\d.]+ tokens/s · length", stats), stats
    assert page.locator(".turn.user").inner_text() == "Hello there"


def test_shift_enter_adds_a_line_and_history_carries_to_the_next_turn(
    open_page: Any, playground_url: str
) -> None:
    page = open_page(playground_url + "/")
    page.get_by_text("model: tiny-random").wait_for()
    page.get_by_label("Max tokens").fill("4")
    message = page.get_by_label("Message")
    message.fill("first line")
    message.press("Shift+Enter")
    message.type("second line")
    assert message.input_value() == "first line\nsecond line"
    message.press("Enter")
    page.locator(".turn.assistant .stats").first.wait_for()
    message.fill("again")
    message.press("Enter")
    page.locator(".turn.assistant .stats").nth(1).wait_for()

    assert page.locator(".turn.user").count() == 2
    assert page.locator(".turn.user").first.inner_text() == "first line\nsecond line"


def metric(base_url: str, name: str) -> float:
    text = httpx.get(base_url + "/metrics").text
    match = re.search(rf"^{re.escape(name)} ([\d.e+]+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_stop_cancels_the_generation_on_the_server(open_page: Any, playground_url: str) -> None:
    cancelled = 'llm_generations_total{outcome="cancelled"}'
    before = metric(playground_url, cancelled)
    page = open_page(playground_url + "/")
    page.get_by_text("model: tiny-random").wait_for()
    page.get_by_label("Temperature").fill("0")  # greedy: no EOS sampled before Stop
    page.get_by_label("Max tokens").fill("2000")  # seconds of tiny-random: Stop comes first
    page.get_by_label("Message").fill("Tell me everything")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("() => document.querySelector('.turn.assistant .content').textContent.length > 0")
    page.get_by_role("button", name="Stop").click()

    page.locator(".turn.assistant .stats").wait_for()
    assert "stopped" in page.locator(".turn.assistant .stats").inner_text()
    assert page.get_by_role("button", name="Send").is_enabled()
    deadline_polls = 100
    while metric(playground_url, cancelled) <= before and deadline_polls:
        page.wait_for_timeout(50)
        deadline_polls -= 1
    assert metric(playground_url, cancelled) == before + 1


def test_a_server_with_a_key_asks_for_it_then_chats(open_page: Any, model_cache_dir: Path) -> None:
    settings = playground_settings(model_cache_dir, api_key="sk-playground")
    with serve(create_app(settings)) as url:
        page = open_page(url + "/", expected_statuses=(401,))
        page.get_by_text("This server needs an API key").wait_for()
        key = page.get_by_label("API key (kept in this tab only)")
        key.fill("sk-playground")
        key.dispatch_event("change")
        page.get_by_text("model: tiny-random").wait_for()
        page.get_by_label("Max tokens").fill("4")
        page.get_by_label("Message").fill("hi")
        page.get_by_label("Message").press("Enter")
        page.locator(".turn.assistant .stats").wait_for()

        assert page.locator(".turn.error").count() == 0
        assert "sk-playground" not in page.url
        assert page.evaluate("() => sessionStorage.getItem('llm-serving-api-key')") == "sk-playground"


def test_an_error_from_the_server_is_shown_in_the_conversation(open_page: Any, playground_url: str) -> None:
    page = open_page(playground_url + "/", expected_statuses=(400,))
    page.get_by_text("model: tiny-random").wait_for()
    page.get_by_label("Max tokens").fill("100000")  # above --max-new-tokens-limit: a 400
    page.get_by_label("Message").fill("hi")
    page.get_by_label("Message").press("Enter")

    error = page.locator(".turn.error")
    error.wait_for()
    assert error.inner_text().startswith("400:")
    assert "4096" in error.inner_text()


def test_the_page_uses_relative_urls_only_and_a_strict_content_policy(playground_url: str) -> None:
    response = httpx.get(playground_url + "/")

    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert not re.search(r'(src|href)="(/|https?:)', response.text)
    script = httpx.get(playground_url + "/playground/playground.js").text
    assert 'fetch("/' not in script
    assert 'new URL("v1/" + path, document.baseURI)' in script


def test_no_playground_means_slash_is_a_404(model_cache_dir: Path) -> None:
    with serve(create_app(playground_settings(model_cache_dir, playground=False))) as url:
        response = httpx.get(url + "/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "route_not_found"
