"""One logging configuration for every entry point: ``python -m service``, the RunPod worker,
and the Modal and Beam shims (where INFO lines such as "engine ready" were lost before)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` ('debug', 'info', ...). Replaces what a platform set up, so that
    our lines reach its log view in one format; uvicorn configures its own loggers itself."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, force=True)
