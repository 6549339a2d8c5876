"""RunPod queue-based serverless: one job in, the chunks of /v1/chat out.

A job's ``input`` has the fields of ``POST /v1/chat``. The handler yields
``{"text": ...}`` items, then ``{"done": {...}}`` (the data of /v1/chat's done
event), or ``{"error": {...}}`` with the service's one error body. With
``return_aggregate_stream`` RunPod also returns the whole list from /run and
/runsync. This module never imports ``runpod``: the shim
(deploy/runpod_handler.py) hands in ``runpod.serverless.start``.

Each yielded item is one awaited POST from the worker to RunPod
(runpod/serverless/modules/rp_job.py, ``handle_job``: ``await stream_result`` per
item), so text is sent in batches: the first piece at once, then what arrived
within ``runpod_batch_s`` or ``runpod_batch_pieces`` pieces, as worker-vllm does.

An ``{"error": ...}`` item is not streamed: ``handle_job`` stops there and ends the
job FAILED with ``str()`` of the error body as its ``error`` (a Python repr, not
JSON), which /status returns; the load tester reads it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import ValidationError

from service.chat_service import ChatService, build_chat_service
from service.engine.base import Engine
from service.errors import APIError, validation_error_to_api_error
from service.logs import configure_logging
from service.schemas import ChatRequest
from service.settings import Settings

logger = logging.getLogger(__name__)

Chunk = dict[str, Any]


async def stream_chunks(
    chat_service: ChatService, job_input: Any, batch_s: float = 0.0, batch_pieces: int = 1
) -> AsyncIterator[Chunk]:
    """Validate ``job_input`` as a /v1/chat body, generate, and yield its chunks.

    After the first piece of text, pieces are joined until ``batch_s`` seconds have
    passed since the last item went out or ``batch_pieces`` have gathered.
    """
    try:
        generation = await chat_service.start_native(ChatRequest.model_validate(job_input))
    except ValidationError as exc:
        yield validation_error_to_api_error(exc.errors()).body()
        return
    except APIError as exc:
        yield exc.body()
        return
    try:
        async for text in batched(generation.texts(), batch_s, batch_pieces):
            yield {"text": text}
    except APIError as exc:  # failed or past the deadline after the first chunk
        await generation.close()  # now: RunPod abandons a handler at its error item without closing it
        yield exc.body()
        return
    finally:
        await generation.close()  # also when RunPod stops reading: frees the slot
    assert generation.done is not None
    yield {"done": generation.done.model_dump()}


async def batched(texts: AsyncIterator[str], batch_s: float, batch_pieces: int) -> AsyncIterator[str]:
    """Join pieces of text: the first goes at once, then one item per ``batch_s`` or ``batch_pieces``.

    A piece is held until the next one arrives or the stream ends, so a batch closes
    at most one piece late. Text gathered before a failure is yielded before it is raised.
    """
    pending: list[str] = []
    sent_at: float | None = None  # None: nothing sent yet
    try:
        async for text in texts:
            pending.append(text)
            if sent_at is None or len(pending) >= batch_pieces or time.perf_counter() - sent_at >= batch_s:
                yield "".join(pending)
                pending.clear()
                sent_at = time.perf_counter()  # after the consumer took the item
    except Exception:
        if pending:
            yield "".join(pending)
        raise
    if pending:
        yield "".join(pending)


class RunpodWorker:
    """The chat service as a RunPod handler, with the concurrency the admission settings allow."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.chat_service = build_chat_service(settings, engine)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RunpodWorker:
        from service.engine import create_engine  # imports torch

        settings = settings or Settings()
        return cls(settings, create_engine(settings))

    async def handler(self, job: dict[str, Any]) -> AsyncIterator[Chunk]:
        """RunPod calls this with ``{"id": ..., "input": {...}}``; an async generator streams."""
        settings = self.settings
        chunks = stream_chunks(
            self.chat_service, job.get("input"), settings.runpod_batch_s, settings.runpod_batch_pieces
        )
        async for chunk in chunks:
            yield chunk

    def concurrency_modifier(self, current_concurrency: int) -> int:
        # Jobs taken beyond the generation slots would only wait in this worker's queue,
        # where no other worker can pick them up: leave them in RunPod's queue instead.
        return self.chat_service.admission.max_concurrency

    def serverless_config(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "concurrency_modifier": self.concurrency_modifier,
            "return_aggregate_stream": True,
        }


def run_worker(start: Callable[[dict[str, Any]], None], settings: Settings | None = None) -> None:
    """Load the model, then hand the worker to RunPod's ``start``. Raises if the model fails to load.

    Loading first means RunPod sees the worker take jobs only once it can serve them;
    a model that cannot load ends the process, and RunPod replaces the worker.
    """
    worker = RunpodWorker.from_settings(settings)
    configure_logging(worker.settings.log_level)
    asyncio.run(worker.engine.start())
    start(worker.serverless_config())
