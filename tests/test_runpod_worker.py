"""service/runpod_worker.py: a RunPod job streams the same chunks as /v1/chat."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from service.engine.base import Engine
from service.runpod_worker import RunpodWorker, batched
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


def run_in_runpods_job_loop(
    worker: RunpodWorker, job_input: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """RunPod's own job loop (``rp_job.handle_job``) over our handler.

    Mock: its two calls that POST to RunPod's API, which cannot be reached from here,
    are recorded instead. Returns the streamed items and the job's final result.
    """
    from runpod.serverless.modules import rp_job

    streamed: list[dict[str, Any]] = []
    finished: list[dict[str, Any]] = []

    async def stream_result(session: Any, job_data: dict[str, Any], job: dict[str, Any]) -> None:
        streamed.append(job_data)

    async def send_result(
        session: Any, job_data: dict[str, Any], job: dict[str, Any], is_stream: bool
    ) -> None:
        finished.append(job_data)

    monkeypatch.setattr(rp_job, "stream_result", stream_result)
    monkeypatch.setattr(rp_job, "send_result", send_result)
    job = {"id": "job-1", "input": job_input}
    asyncio.run(rp_job.handle_job(None, worker.serverless_config(), job))  # type: ignore[arg-type]
    (result,) = finished
    return streamed, result


@pytest.fixture(scope="module")
def batching_worker(
    make_settings: Callable[..., Settings], engine_class: Callable[..., Engine]
) -> Iterator[RunpodWorker]:
    # A window no test outlasts: only the piece count ends a batch, so the count is exact.
    settings = make_settings(runpod_batch_s=3600, runpod_batch_pieces=5)
    worker = RunpodWorker(settings, engine_class(settings))
    asyncio.run(worker.engine.start())
    yield worker
    asyncio.run(worker.engine.close())


def test_text_goes_to_runpod_in_batches(
    batching_worker: RunpodWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_input = {"messages": "Hello", "max_new_tokens": 60, "ignore_eos": True, "seed": 3}
    one_piece_per_item = batching_worker.settings.model_copy(update={"runpod_batch_pieces": 1})
    unbatched = run_job(RunpodWorker(one_piece_per_item, batching_worker.engine), job_input)

    streamed, result = run_in_runpods_job_loop(batching_worker, job_input, monkeypatch)

    items = [item["output"] for item in streamed]
    assert result["output"] == items  # return_aggregate_stream: the same list at the end
    *texts, done = items
    assert "".join(t["text"] for t in texts) == "".join(c["text"] for c in unbatched[:-1])
    assert done["done"]["usage"]["completion_tokens"] == 60
    # The first piece alone, then 5 pieces an item; a piece carries at least one token.
    assert len(texts) <= 1 + math.ceil((60 - 1) / 5) < len(unbatched) - 1


def test_batches_send_the_first_piece_at_once_then_by_count_or_time() -> None:
    async def pieces(gaps_s: list[float]) -> AsyncIterator[str]:
        for index, gap_s in enumerate(gaps_s):
            await asyncio.sleep(gap_s)
            yield str(index)

    async def collect(gaps_s: list[float], batch_s: float, batch_pieces: int) -> list[str]:
        return [text async for text in batched(pieces(gaps_s), batch_s, batch_pieces)]

    assert asyncio.run(collect([0] * 8, 60, 3)) == ["0", "123", "456", "7"]
    assert asyncio.run(collect([0, 0, 0, 0.2, 0], 0.1, 100)) == ["0", "123", "4"]


def test_text_before_a_failure_is_sent_before_it() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise RuntimeError("generation failed")

    async def collect() -> tuple[list[str], str | None]:
        seen: list[str] = []
        try:
            async for text in batched(failing(), 60, 100):
                seen.append(text)
        except RuntimeError as exc:
            return seen, str(exc)
        return seen, None

    assert asyncio.run(collect()) == (["a", "b"], "generation failed")


def test_an_error_ends_runpods_job_failed_with_the_error_body_as_a_repr(
    worker: RunpodWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loadtest.clients.runpod_queue import error_from_job

    streamed, result = run_in_runpods_job_loop(worker, {"messages": []}, monkeypatch)

    assert streamed == []
    assert set(result) == {"error"}
    assert result["error"].startswith("{'message': ")  # str() of a dict: RunPod's doing, not JSON
    message, error_type = error_from_job(result["error"])
    assert error_type == "invalid_request_error"
    assert "messages" in message
