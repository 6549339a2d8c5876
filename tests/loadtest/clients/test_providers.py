"""Credentials from env vars into headers, and URLs as each protocol wants them."""

from __future__ import annotations

from loadtest.clients.providers import PROVIDERS, auth_headers, normalize_base_url


def test_modal_sends_proxy_auth_headers_and_the_services_key() -> None:
    env = {"MODAL_KEY": "wk-1", "MODAL_SECRET": "ws-1", "API_KEY": "k"}

    headers, used = auth_headers(PROVIDERS["modal"], env)

    assert headers == {"Authorization": "Bearer k", "Modal-Key": "wk-1", "Modal-Secret": "ws-1"}
    assert used == ["API_KEY", "MODAL_KEY", "MODAL_SECRET"]


def test_runpod_and_beam_use_their_own_tokens() -> None:
    env = {"RUNPOD_API_KEY": "rp", "BEAM_TOKEN": "bt", "API_KEY": "ignored"}

    assert auth_headers(PROVIDERS["runpod-queue"], env)[0] == {"Authorization": "Bearer rp"}
    assert auth_headers(PROVIDERS["beam"], env)[0] == {"Authorization": "Bearer bt"}


def test_openai_falls_back_to_openai_api_key_and_no_env_means_no_headers() -> None:
    assert auth_headers(PROVIDERS["openai"], {"OPENAI_API_KEY": "sk"})[0] == {"Authorization": "Bearer sk"}
    assert auth_headers(PROVIDERS["local"], {}) == ({}, [])


def test_a_trailing_v1_is_dropped_for_http_protocols_but_kept_for_runpods_queue() -> None:
    assert normalize_base_url("https://api.openai.com/v1/", "openai") == "https://api.openai.com"
    assert (
        normalize_base_url("https://api.runpod.ai/v2/abc/", "runpod-queue") == "https://api.runpod.ai/v2/abc"
    )
