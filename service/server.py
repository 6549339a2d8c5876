"""uvicorn with a graceful drain on SIGTERM.

Orchestrators (Docker, Kubernetes, Modal, RunPod) stop a container with
SIGTERM and kill it a while later. On the first SIGTERM this server turns
/ready to 503 and refuses new requests with 503, lets the admitted streams run
to their end for up to ``drain_timeout`` seconds, then shuts uvicorn down and
the process exits 0. SIGINT (Ctrl-C) and a second SIGTERM stop at once.
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

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_task is None and self._loop is not None:
            # Remembered so that uvicorn re-raises it once it has shut down (see __main__).
            self._captured_signals.append(sig)
            self._loop.call_soon_threadsafe(self._begin_drain)
            return
        AppStatus.should_exit = True  # end SSE streams now
        super().handle_exit(sig, frame)

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
                aborted = self._chat_service.abort_all("the server is shutting down")
                logger.warning("drain timeout: ending %d streams with an error event", aborted)
                await admission.wait_idle(_ABORT_GRACE_S)
        finally:
            # Whatever happened above, the process must still stop.
            AppStatus.should_exit = True  # sse-starlette ends whatever still streams
            self.should_exit = True
