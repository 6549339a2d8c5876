"""service/runpod_worker.py: a RunPod job streams the same chunks as /v1/chat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from service.engine.base import Engine
from service.runpod_worker import RunpodWorker
from service.settings import Settings
from tests.conftest import stream_chat

PAYLOAD = {"messages": [{"role": "user", "content": "Hello"}], "max_new_tokens": 12, "seed": 7}


@pytest.fixture(scope="module")
def worker(
    make_settings: Callable[..., Settings], engine_class: Callable[..., Engine]
) -> Iterator[RunpodWorker]:
    settings = make_settings()
    worker = RunpodWorker(settings, engine_class(settings))
    asyncio.run(worker.engine.start())
    yield worker
    asyncio.run(worker.engine.close())


def run_job(worker: RunpodWorker, job_input: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [chunk async for chunk in worker.handler({"id": "job-1", "input": job_input})]

    return asyncio.run(collect())


def test_a_job_streams_text_chunks_then_one_done_chunk(worker: RunpodWorker) -> None:
    chunks = run_job(worker, PAYLOAD)

    *texts, last = chunks
    assert len(texts) > 1, "text arrives in pieces, as it is generated"
    assert all(set(chunk) == {"text"} for chunk in texts)
    assert set(last) == {"done"}
    assert last["done"]["usage"]["completion_tokens"] <= PAYLOAD["max_new_tokens"]
    assert {"finish_reason", "usage", "timings", "instance"} <= set(last["done"])


def test_a_job_gives_the_same_text_as_v1_chat_for_the_same_seed(
    worker: RunpodWorker, client: httpx.Client
) -> None:
    over_http = stream_chat(client, PAYLOAD)
    chunks = run_job(worker, PAYLOAD)

    assert "".join(chunk["text"] for chunk in chunks[:-1]) == over_http.text
    assert chunks[-1]["done"]["finish_reason"] == over_http.done["finish_reason"]


def test_an_invalid_input_is_one_error_chunk_naming_the_field(worker: RunpodWorker) -> None:
    chunks = run_job(worker, {"messages": [{"role": "robot", "content": "hi"}]})

    assert len(chunks) == 1
    error = chunks[0]["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages.0.role"


def test_a_missing_input_is_an_error_chunk(worker: RunpodWorker) -> None:
    (chunk,) = run_job(worker, None)
    assert chunk["error"]["type"] == "invalid_request_error"


def test_max_new_tokens_above_the_limit_is_an_error_chunk(worker: RunpodWorker) -> None:
    (chunk,) = run_job(worker, {"messages": "hi", "max_new_tokens": 10**6})
    assert chunk["error"]["code"] == "max_new_tokens_too_large"


def test_a_worker_whose_model_is_not_loaded_answers_service_unavailable(
    make_settings: Callable[..., Settings], engine_class: Callable[..., Engine]
) -> None:
    settings = make_settings()
    not_started = RunpodWorker(settings, engine_class(settings))

    (chunk,) = run_job(not_started, PAYLOAD)

    assert chunk["error"]["type"] == "service_unavailable"


@pytest.mark.parametrize(("max_concurrency", "jobs_at_once"), [(0, None), (3, 3)])
def test_jobs_taken_at_once_follow_max_concurrency(
    make_settings: Callable[..., Settings],
    engine_class: Callable[..., Engine],
    engine_name: str,
    max_concurrency: int,
    jobs_at_once: int | None,
) -> None:
    settings = make_settings(max_concurrency=max_concurrency, max_batch_size=6)
    worker = RunpodWorker(settings, engine_class(settings))

    # 0: what the engine runs at once (1 for sequential, the batch size for batched)
    expected = jobs_at_once or (6 if engine_name == "batched" else 1)
    assert worker.concurrency_modifier(0) == expected
    assert worker.serverless_config()["return_aggregate_stream"] is True
