"""Blocking work awaited from the event loop on a daemon thread of its own.

Why not ``asyncio.to_thread``: its executor's threads are joined when the process
exits, so a SIGTERM during a model load (seconds on a CPU, minutes for a 7B download)
waited for the load to finish after the server had already shut down. A daemon
thread dies with the process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def run_on_daemon_thread(fn: Callable[..., T], *args: Any, name: str) -> T:
    """Run ``fn(*args)`` on a new daemon thread and await its result (or its exception).

    Cancelling the awaiting task does not stop ``fn``; the process can still exit meanwhile.
    """
    job, result = awaitable_job(fn, *args)
    threading.Thread(target=job, name=name, daemon=True).start()
    return await result


def awaitable_job(fn: Callable[..., T], *args: Any) -> tuple[Callable[[], None], asyncio.Future[T]]:
    """``(job, future)``: run ``job`` on any thread; ``future`` (of the running loop) gets what
    ``fn(*args)`` returned or raised."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def job() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    return job, future


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled: nobody waits any more
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
