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
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(settle, future, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


def settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Give ``future`` its result, or ``exc``; on the future's loop (``call_soon_threadsafe``)."""
    if future.done():  # cancelled: nobody waits any more
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
