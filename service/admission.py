"""Admission control: who may generate now, who may wait, who is turned away.

A request takes one of ``max_concurrency`` slots for its whole stream. When
none is free it waits, if fewer than ``max_queue`` are already waiting, for at
most its queue timeout; otherwise it is refused at once (429), before any
stream starts. While the server drains for shutdown, new requests are refused
(503) and the ones admitted run to their end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from service.errors import APIError


@dataclass
class Slot:
    """A held generation slot; :meth:`AdmissionController.release` gives it back once."""

    waited_s: float
    released: bool = False


class AdmissionController:
    def __init__(self, max_concurrency: int, max_queue: int, retry_after_s: int = 1) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.running = 0
        self.waiting = 0
        self.draining = False
        self._free = asyncio.Semaphore(max_concurrency)
        self._idle = asyncio.Event()
        self._idle.set()

    async def acquire(self, timeout_s: float | None) -> Slot:
        """Take a slot, waiting at most ``timeout_s`` (None: no limit). Raises :class:`APIError`."""
        if self.draining:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        started = time.perf_counter()
        must_wait = self.running >= self.max_concurrency or self.waiting > 0
        if must_wait and self.waiting >= self.max_queue:
            raise APIError(
                429,
                f"the server is at capacity ({self.running} generating, {self.waiting} waiting): retry later",
                code="overloaded",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.waiting += 1
        self._idle.clear()
        try:
            await asyncio.wait_for(self._free.acquire(), timeout_s)
        except TimeoutError:
            raise APIError(
                503,
                f"waited {time.perf_counter() - started:.1f}s for a generation slot without getting one",
                code="queue_timeout",
                headers={"Retry-After": str(self.retry_after_s)},
            ) from None
        finally:
            self.waiting -= 1
            self._update_idle()
        self.running += 1
        self._idle.clear()
        return Slot(waited_s=time.perf_counter() - started)

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        self.running -= 1
        self._free.release()
        self._update_idle()

    def begin_drain(self) -> None:
        """Refuse new requests from now on; the admitted ones carry on."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request runs or waits; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _update_idle(self) -> None:
        if self.running == 0 and self.waiting == 0:
            self._idle.set()
