"""Engines behind one interface (:mod:`service.engine.base`).

Only this package imports torch and transformers; ``create_engine`` imports the
implementation lazily so the HTTP layer can be imported without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.engine.base import Engine

if TYPE_CHECKING:
    from service.settings import Settings


def create_engine(settings: Settings) -> Engine:
    """Build the engine the settings ask for (weights load later, in ``Engine.start``)."""
    if settings.engine == "batched":
        from service.engine.batched import BatchedEngine

        return BatchedEngine(settings)
    from service.engine.sequential import SequentialEngine

    return SequentialEngine(settings)
