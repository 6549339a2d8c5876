"""What OpenAI clients call beside chat: CORS for browsers, one model by id, request ids, unknown routes.

None of it depends on the model: the scripted engine (tests/fakes.py) serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import serve
from tests.fakes import ScriptedEngine

ORIGIN = "https://playground.example"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    settings = Settings(model="scripted", cors_allow_origins=f"{ORIGIN},http://localhost:3000", api_key="k1")
    with serve(create_app(settings, ScriptedEngine())) as base_url:
        yield base_url


def preflight(url: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(f"{url}/v1/chat/completions", headers=headers)


def test_a_preflight_is_answered_before_the_key_check(url: str) -> None:
    response = preflight(url, ORIGIN)

    assert response.status_code == 200  # was 405, and 401 with --api-key
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_a_preflight_from_another_origin_is_refused(url: str) -> None:
    response = preflight(url, "https://elsewhere.example")

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_an_allowed_origins_request_carries_cors_headers(url: str) -> None:
    response = httpx.get(f"{url}/v1/models", headers={"Origin": ORIGIN, "Authorization": "Bearer k1"})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_without_cors_origins_no_cors_headers_are_sent() -> None:
    with serve(create_app(Settings(model="scripted"), ScriptedEngine())) as plain:
        response = httpx.get(f"{plain}/v1/models", headers={"Origin": ORIGIN})

    assert "access-control-allow-origin" not in response.headers


def test_the_sdk_retrieves_the_served_model_and_404s_another(url: str) -> None:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0) as sdk:
        model = sdk.models.retrieve("scripted")
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.models.retrieve("gpt-4o")

    assert model.id == "scripted"
    assert model.object == "model"
    body: Any = caught.value.body
    assert body["code"] == "model_not_found"


def test_an_unknown_route_is_named_and_the_routes_listed(url: str) -> None:
    response = httpx.post(f"{url}/v1/completion", headers={"Authorization": "Bearer k1"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "route_not_found"
    assert "POST /v1/completion;" in error["message"]
    assert "POST /v1/chat/completions" in error["message"]
    assert "GET /v1/models" in error["message"]


@pytest.mark.parametrize("path", ["/health", "/v1/models", "/v1/nothing"])
def test_every_response_has_a_request_id_and_echoes_the_clients(url: str, path: str) -> None:
    made = httpx.get(f"{url}{path}", headers={"Authorization": "Bearer k1"})
    echoed = httpx.get(f"{url}{path}", headers={"Authorization": "Bearer k1", "X-Request-Id": "trace-42"})
    hostile = httpx.get(f"{url}{path}", headers={"Authorization": "Bearer k1", "X-Request-Id": "a b\tc"})

    assert len(made.headers["x-request-id"]) == 32
    assert echoed.headers["x-request-id"] == "trace-42"
    assert hostile.headers["x-request-id"] not in ("a b\tc", "")


def test_a_refused_request_has_a_request_id_too(url: str) -> None:
    response = httpx.get(f"{url}/v1/models")  # no key: 401 from the middleware

    assert response.status_code == 401
    assert response.headers["x-request-id"]
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert response.headers["content-length"] == str(len(response.content))


def test_error_bodies_carry_the_request_id_the_client_sent(url: str) -> None:
    headers = {"Authorization": "Bearer k1", "X-Request-Id": "trace-7"}
    invalid = httpx.post(f"{url}/v1/chat/completions", json={"messages": []}, headers=headers)
    unknown = httpx.get(f"{url}/v1/nowhere", headers=headers)
    fine = httpx.get(f"{url}/v1/models", headers=headers)

    assert invalid.status_code == 400
    assert invalid.json()["error"]["request_id"] == "trace-7"
    assert unknown.json()["error"]["code"] == "route_not_found"
    assert unknown.json()["error"]["request_id"] == "trace-7"
    assert "request_id" not in fine.text  # only errors are rewritten


def test_an_error_mid_stream_reaches_the_sdk_as_an_api_error() -> None:
    # 50 ms a token, 0.3 s for the whole request: the deadline passes mid-stream.
    settings = Settings(model="scripted", request_timeout=0.3)
    with (
        serve(create_app(settings, ScriptedEngine(step_s=0.05))) as base_url,
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as sdk,
    ):
        stream = sdk.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], max_tokens=100, stream=True
        )
        texts: list[str] = []

        def read_all() -> None:
            texts.extend(chunk.choices[0].delta.content or "" for chunk in stream)

        with pytest.raises(openai.APIError) as caught:
            read_all()

    assert 0 < len(texts) < 100
    body: Any = caught.value.body
    assert body["code"] == "request_timeout"


def test_the_openai_stream_ends_with_the_error_chunk_then_done() -> None:
    settings = Settings(model="scripted", request_timeout=0.3)
    with serve(create_app(settings, ScriptedEngine(step_s=0.05))) as base_url:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100, "stream": True}
        lines = [
            line
            for line in httpx.post(f"{base_url}/v1/chat/completions", json=body).text.splitlines()
            if line
        ]

    assert lines[-1] == "data: [DONE]"
    assert lines[-2].startswith('data: {"error":')
    assert not any(line.startswith("event:") for line in lines)
