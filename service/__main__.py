"""``python -m service``: settings from env vars and flags, then uvicorn."""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn

from service.app import create_app
from service.settings import Settings


def main() -> None:
    settings = Settings(_cli_parse_args=True)  # type: ignore[call-arg]
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal to the handler
    # that was installed before it ran. SIGTERM is how orchestrators (Docker, Modal,
    # RunPod, Kubernetes) stop a healthy server: after a clean shutdown, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )


if __name__ == "__main__":
    main()
