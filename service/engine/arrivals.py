"""Requests on their way to the batch loop: what an idle loop waits for before it prefills.

An idle loop given a request used to wait ``--arrival-gap-ms`` (5) for more, so that clients
sending at once (8 arrive within 6 ms, each parsed and templated on the event loop first) are
prefilled together (docs/performance.md: A burst reaching an idle engine). A lone client paid
the 5 ms at every request. The chat service knows better: it announces each request as it
arrives, before the checks and the chat template, and the engine takes one announcement back
as the request reaches the loop. The loop waits (a gap at a time, as before) only while
announced requests are still on their way; a lone request starts at once.

An announced request that never reaches the loop (refused with a 4xx, its client gone) is
forgotten after ``horizon_s``, the longest the loop gathers anyway.
"""

from __future__ import annotations

import collections
import threading
import time


class Arrivals:
    """Announced requests not yet submitted; thread-safe (announced on the event loop, read by
    the batch loop's thread)."""

    def __init__(self, horizon_s: float) -> None:
        self._horizon_s = horizon_s
        self._announced: collections.deque[float] = collections.deque()  # monotonic times, oldest first
        self._lock = threading.Lock()

    def announce(self) -> None:
        """A request arrived; it may reach the loop soon."""
        with self._lock:
            self._announced.append(time.monotonic())

    def arrived(self) -> None:
        """A request reached the loop: one announcement fewer (none to take for an unannounced one)."""
        with self._lock:
            if self._announced:
                self._announced.popleft()

    def on_their_way(self) -> int:
        """Announced requests not yet arrived, announced within the horizon."""
        with self._lock:
            oldest = time.monotonic() - self._horizon_s
            while self._announced and self._announced[0] < oldest:
                self._announced.popleft()
            return len(self._announced)
