"""The app factory: ``create_app(settings, engine)`` builds the ASGI app around its collaborators.

No module globals: tests, the Docker entrypoint and the provider shims each
build their own app, with the real engine or one they constructed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.chat_service import ChatService
from service.engine.base import Engine, EngineState
from service.errors import install_error_handlers
from service.instance import current_instance
from service.routes import chat, health, openai
from service.settings import Settings

logger = logging.getLogger(__name__)

API_VERSION = "0.1.0"


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. The engine starts loading when the app starts; /ready says when it is done."""
    settings = settings or Settings()
    if engine is None:
        from service.engine import create_engine  # imports torch: only when we build the real one

        engine = create_engine(settings)
    chat_service = ChatService(engine, settings, current_instance(settings.instance_id))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load in the background so that /health answers (and /ready says 503) while
        # weights load: minutes for a 7B model, and orchestrators probe meanwhile.
        loading = asyncio.create_task(_start_engine(engine), name="engine-start")
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await engine.close()

    app = FastAPI(
        title="LLM serving",
        version=API_VERSION,
        description="Streams chat completions from a transformers model over server-sent events.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.chat_service = chat_service
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(chat.router)
    app.include_router(openai.router)
    return app


async def _start_engine(engine: Engine) -> None:
    if engine.status.state is not EngineState.LOADING:
        return  # already started, e.g. by a provider shim before serving
    # On failure the engine logs it and sets status FAILED: /health and /ready report it.
    with contextlib.suppress(Exception):
        await engine.start()
