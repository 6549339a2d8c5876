"""``python -m service``: settings from env vars and flags, then uvicorn with a graceful drain."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from pydantic import ValidationError

from service.app import create_app
from service.logs import configure_logging
from service.server import DrainingServer, uvicorn_config
from service.settings import Settings


def main() -> None:
    try:
        settings = Settings(_cli_parse_args=True)
    except ValidationError as exc:  # a bad flag or env var: say which, without a traceback
        problems = "\n".join(f"  {_field(error)}: {error['msg']}" for error in exc.errors())
        sys.exit(f"python -m service: invalid settings\n{problems}")
    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # After the drain, connections still open get this long before they are cut.
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, app.state.chat_service, settings.drain_timeout)
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly; it
    # reaches this handler then. SIGTERM is how orchestrators stop a healthy
    # server, so a clean shutdown exits 0.
    signal.signal(signal.SIGTERM, lambda *_: _exit_after_shutdown())
    server.run()


def _exit_after_shutdown() -> None:
    """Exit 0 once uvicorn and the app have shut down. Not through the interpreter's finalization:
    a model still loading (SIGTERM during the load) runs in torch on a daemon thread, and
    finalizing under it aborts the process (exit -6) or waits for it."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _field(error: Any) -> str:
    """The flag a validation error is about (the whole settings for a cross-field rule)."""
    location = error.get("loc") or ()
    return "--" + str(location[0]).replace("_", "-") if location else "settings"


if __name__ == "__main__":
    main()
