"""Engines behind one interface (:mod:`service.engine.base`).

Only this package imports torch and transformers; ``create_engine`` imports the
implementation lazily so the HTTP layer can be imported without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.engine.base import Engine

if TYPE_CHECKING:
    from service.settings import EngineSettings


def create_engine(settings: EngineSettings) -> Engine:
    """Build the engine the settings ask for (weights load later, in ``Engine.start``); it keeps
    only the engine's part of them."""
    from service.settings import Settings  # settings imports this package (builtin_models)

    if isinstance(settings, Settings):
        settings = settings.engine_settings()
    if settings.engine == "batched":
        from service.engine.batched import BatchedEngine

        return BatchedEngine(settings)
    from service.engine.sequential import SequentialEngine

    return SequentialEngine(settings)
