"""Admission control: who may generate now, who may wait, who is turned away.

A request is admitted (:meth:`AdmissionController.admit`) or refused at once:
429 when ``max_concurrency`` generate and ``max_queue`` wait already, 503 while
the server drains for shutdown. An admitted request then waits, inside its
response, for one of the ``max_concurrency`` generation slots
(:meth:`AdmissionController.take_slot`), gives the slot back when its generation
ends, and leaves when its response has been written.

The drain waits for every admitted request to leave, running or waiting: a
request moves from waiting to running in one step with nothing in between, so
there is no instant at which the server looks idle while a request is queued.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass

from service.errors import ErrorCode


class TicketState(enum.Enum):
    WAITING = "waiting"  # for a generation slot
    RUNNING = "running"  # holds a slot
    FINISHING = "finishing"  # gave its slot back; its response is still being written
    LEFT = "left"


@dataclass
class Ticket:
    """One admitted request, from :meth:`AdmissionController.admit` to :meth:`~AdmissionController.leave`."""

    admitted_at: float
    waited_s: float = 0.0
    state: TicketState = TicketState.WAITING


class AdmissionController:
    def __init__(self, max_concurrency: int, max_queue: int, retry_after_s: int = 1) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.running = 0
        self.waiting = 0
        self.admitted = 0  # running, waiting, or still writing their response
        self.draining = False
        self._free = asyncio.Semaphore(max_concurrency)
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self) -> Ticket:
        """Admit a request as waiting for a slot, or refuse it now. Raises :class:`APIError` (429, 503)."""
        self.check_capacity()
        self.waiting += 1
        self.admitted += 1
        self._idle.clear()
        return Ticket(admitted_at=time.perf_counter())

    def check_capacity(self) -> None:
        """Refuse now what :meth:`admit` would refuse, without admitting: callers check before
        work a refused request should not cost (templating, tokenizing). Raises :class:`APIError`."""
        if self.draining:
            raise ErrorCode.SHUTTING_DOWN.error("the server is shutting down")
        must_wait = self.running >= self.max_concurrency or self.waiting > 0
        if must_wait and self.waiting >= self.max_queue:
            raise ErrorCode.OVERLOADED.error(
                f"the server is at capacity ({self.running} generating, {self.waiting} waiting): retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )

    async def take_slot(self, ticket: Ticket) -> None:
        """Wait for a generation slot; the caller bounds the wait (``asyncio.timeout``)."""
        await self._free.acquire()
        # No await between these: the ticket is counted as waiting or running at every instant.
        self.waiting -= 1
        self.running += 1
        ticket.state = TicketState.RUNNING
        ticket.waited_s = time.perf_counter() - ticket.admitted_at

    def free_slot(self, ticket: Ticket) -> None:
        """The generation ended: the next waiting request may start. Idempotent."""
        if ticket.state is TicketState.RUNNING:
            ticket.state = TicketState.FINISHING
            self.running -= 1
            self._free.release()

    def leave(self, ticket: Ticket) -> None:
        """The response is written (or abandoned): forget the request. Idempotent."""
        if ticket.state is TicketState.LEFT:
            return
        if ticket.state is TicketState.RUNNING:
            self.free_slot(ticket)
        elif ticket.state is TicketState.WAITING:
            self.waiting -= 1
        ticket.state = TicketState.LEFT
        self.admitted -= 1
        if self.admitted == 0:
            self._idle.set()

    def begin_drain(self) -> None:
        """Refuse new requests from now on; the admitted ones carry on."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every admitted request has left; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
