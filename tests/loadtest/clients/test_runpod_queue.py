"""The RunPod queue client against a fake of RunPod's queue API (the provider's network is the only fake).

The fake keeps RunPod's shapes: ``POST /v2/{endpoint}/run`` answers ``{"id", "status"}``;
``GET /v2/{endpoint}/stream/{id}`` answers ``{"status", "stream": [{"output": ...}]}``
with the outputs produced since the previous poll. Its handler yields the native
chunks: ``{"text": ...}`` and finally ``{"done": {...}}``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException

from loadtest.clients import RunPodQueueClient
from loadtest.driver.runner import send_one
from loadtest.measure.metrics import RequestRecord, build_record
from tests.conftest import serve

QUEUE_S = 0.300  # in the queue before the worker starts
TOKEN_GAP_S = 0.050
TOKENS = 6
POLL_INTERVAL_S = 0.100
API_KEY = "rp-test-key"


# What RunPod stores for a job whose handler yielded the service's error body: its str().
SERVICE_ERROR = str(
    {"message": "the request took longer than 1s", "type": "timeout", "param": None, "code": "x"}
)


def fake_runpod(fail: bool = False, error: str = SERVICE_ERROR) -> FastAPI:
    app = FastAPI()
    jobs: dict[str, dict[str, Any]] = {}

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {API_KEY}":
            raise HTTPException(401, "unauthorized")

    def outputs() -> list[tuple[float, dict[str, Any]]]:
        texts = [(QUEUE_S + index * TOKEN_GAP_S, {"text": f" t{index}"}) for index in range(TOKENS)]
        usage = {"prompt_tokens": 3, "completion_tokens": TOKENS, "total_tokens": 3 + TOKENS}
        done = {"finish_reason": "length", "usage": usage, "instance": {"id": "w1", "started_at": 0.0}}
        return [*texts, (QUEUE_S + TOKENS * TOKEN_GAP_S, {"done": done})]

    @app.post("/v2/{endpoint_id}/run")
    def run(
        endpoint_id: str, body: dict[str, Any], authorization: str | None = Header(None)
    ) -> dict[str, str]:
        check(authorization)
        job_id = f"{uuid.uuid4()}-u1"
        jobs[job_id] = {"created": time.monotonic(), "sent": 0, "input": body["input"]}
        return {"id": job_id, "status": "IN_QUEUE"}

    @app.get("/v2/{endpoint_id}/stream/{job_id}")
    def stream(endpoint_id: str, job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        job = jobs[job_id]
        elapsed = time.monotonic() - job["created"]
        if elapsed < QUEUE_S:
            return {"status": "IN_QUEUE", "stream": []}
        if fail:  # /stream does not carry the error (runpod-python issue 397): /status does
            return {"status": "FAILED", "stream": []}
        ready = [output for at, output in outputs() if at <= elapsed]
        new, job["sent"] = ready[job["sent"] :], len(ready)
        status = "COMPLETED" if len(ready) == len(outputs()) else "IN_PROGRESS"
        return {"status": status, "stream": [{"output": output} for output in new]}

    @app.get("/v2/{endpoint_id}/status/{job_id}")
    def status(endpoint_id: str, job_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        assert fail, "a client reads /status only for a failed job"
        return {"id": job_id, "status": "FAILED", "error": error}

    return app


def measure(base_url: str, api_key: str = API_KEY) -> RequestRecord:
    client = RunPodQueueClient(
        f"{base_url}/v2/endpoint-1",
        max_tokens=TOKENS,
        headers={"Authorization": f"Bearer {api_key}"},
        poll_interval_s=POLL_INTERVAL_S,
    )

    async def send() -> RequestRecord:
        async with httpx.AsyncClient() as http:
            return build_record(0, 0, "steady", await send_one(client, http, "hi", 10.0))

    return asyncio.run(send())


@pytest.fixture(scope="module")
def runpod_url() -> Iterator[str]:
    with serve(fake_runpod(), wait_ready=False) as url:
        yield url


def test_ttft_is_what_a_polling_client_sees(runpod_url: str) -> None:
    record = measure(runpod_url)

    assert record.ok
    # Not before the worker produced text, and at most one polling interval (plus slack) after.
    assert QUEUE_S <= record.ttft_s <= QUEUE_S + POLL_INTERVAL_S + 0.060
    assert record.polls is not None
    assert record.polls >= 4


def test_tokens_come_from_the_done_chunks_usage(runpod_url: str) -> None:
    record = measure(runpod_url)

    assert record.output_tokens == TOKENS
    assert record.content_chunks == TOKENS
    assert record.instance_id == "w1"
    assert record.finish_reason == "length"


def test_a_wrong_key_is_an_http_error(runpod_url: str) -> None:
    record = measure(runpod_url, api_key="wrong")

    assert record.http_status == 401
    assert record.error_type == "http_error"


def test_a_job_failed_by_the_services_error_reads_its_message_from_status() -> None:
    with serve(fake_runpod(fail=True), wait_ready=False) as url:
        record = measure(url)

    assert record.error_type == "stream_error"
    assert record.error == "the request took longer than 1s"


def test_a_job_failed_otherwise_is_job_failed_with_runpods_error() -> None:
    with serve(fake_runpod(fail=True, error="handler: boom \ntraceback: ..."), wait_ready=False) as url:
        record = measure(url)

    assert record.error_type == "job_failed"
    assert record.error.startswith("job FAILED: handler: boom")
