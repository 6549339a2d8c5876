"""uvicorn with a graceful drain on SIGTERM.

Orchestrators (Docker, Kubernetes, Modal, RunPod) stop a container with
SIGTERM and kill it a while later. On the first SIGTERM this server turns
/ready to 503 and refuses new requests with 503, lets the admitted streams run
to their end for up to ``drain_timeout`` seconds, then shuts uvicorn down and
the process exits 0. SIGINT (Ctrl-C) and a second SIGTERM stop at once: every request
ends with its error body (an error event on a stream, a 503 otherwise) and the process
exits; a third signal is uvicorn's own forced exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
from sse_starlette.sse import AppStatus

from service.chat_service import ChatService
from service.http_protocol import BoundedHttpToolsProtocol

logger = logging.getLogger(__name__)

# After the drain timeout, streams get this long to send their error event and end.
_ABORT_GRACE_S = 2.0


def uvicorn_config(app: Any, host: str, port: int, log_level: str, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the app: every server of ours (``python -m service``, the
    tests' live servers) parses HTTP with a bound on request heads (service.http_protocol)."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=BoundedHttpToolsProtocol, **options
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, chat_service: ChatService, drain_timeout_s: float):
        super().__init__(config)
        self._chat_service = chat_service
        self._drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stopping_now = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._stopping_now:
            super().handle_exit(sig, frame)  # not serving yet, or a third signal: uvicorn's own
            return
        # Remembered so that uvicorn re-raises it once it has shut down (see __main__).
        self._captured_signals.append(sig)
        if sig == signal.SIGTERM and self._drain_task is None:
            self._loop.call_soon_threadsafe(self._begin_drain)
        else:  # a second SIGTERM, or SIGINT (Ctrl-C): stop now
            self._stopping_now = True
            self._loop.call_soon_threadsafe(self._stop_now)

    def _begin_drain(self) -> None:
        self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        admission = self._chat_service.admission
        logger.info(
            "SIGTERM: draining %d running and %d waiting requests (up to %gs)",
            admission.running,
            admission.waiting,
            self._drain_timeout_s,
        )
        admission.begin_drain()
        try:
            if not await admission.wait_idle(self._drain_timeout_s):
                logger.warning("drain timeout")
                await self._end_every_request("the server is shutting down")
        finally:
            self._exit()

    def _stop_now(self) -> None:
        """End every request now, each with its error body (an error event, or a 503), then exit."""
        self._chat_service.admission.begin_drain()

        async def stop() -> None:
            try:
                await self._end_every_request("the server is stopping now")
            finally:
                self._exit()

        self._stop_task = asyncio.create_task(stop())

    async def _end_every_request(self, reason: str) -> None:
        aborted = self._chat_service.abort_all(reason)
        logger.warning("ending %d requests with an error: %s", aborted, reason)
        await self._chat_service.admission.wait_idle(_ABORT_GRACE_S)

    def _exit(self) -> None:
        # Whatever happened before, the process must still stop.
        AppStatus.should_exit = True  # sse-starlette ends whatever still streams
        self.should_exit = True
