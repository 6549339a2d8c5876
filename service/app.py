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
from starlette.middleware.cors import CORSMiddleware

from service.auth import ApiKeyAuth
from service.chat_service import build_chat_service
from service.engine.base import Engine, EngineState
from service.errors import install_error_handlers
from service.middleware import BodySizeLimit, HeadAsGet, RequestCounter, RequestId
from service.routes import chat, completions, health, metrics, openai
from service.routes.playground import install_playground
from service.settings import Settings

logger = logging.getLogger(__name__)

API_VERSION = "0.1.0"


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. The engine starts loading when the app starts; /ready says when it is done."""
    settings = settings or Settings()
    if engine is None:
        from service.engine import create_engine  # imports torch: only when we build the real one

        engine = create_engine(settings)
    chat_service = build_chat_service(settings, engine)
    chat_service.metrics.track_startup(lambda: _startup_phases(engine))

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
    app.state.admission = chat_service.admission
    app.state.metrics = chat_service.metrics
    app.state.chat_service = chat_service
    install_error_handlers(app)
    for router in (health.router, metrics.router, chat.router, openai.router, completions.router):
        app.include_router(router)
    if settings.playground:
        install_playground(app)
    # Added last runs first: every response gets a request id, browsers' preflights are answered
    # (before the key check: a preflight carries no key), HEAD becomes GET, every API request is
    # counted, then strangers are refused, then oversized bodies.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyAuth, api_keys=settings.api_keys)
    app.add_middleware(RequestCounter, metrics=chat_service.metrics)
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(RequestId)
    return app


def _startup_phases(engine: Engine) -> dict[str, float] | None:
    startup = engine.status.startup
    return startup.phases() if startup is not None else None


async def _start_engine(engine: Engine) -> None:
    if engine.status.state is not EngineState.LOADING:
        return  # already started, e.g. by a provider shim before serving
    # On failure the engine logs it and sets status FAILED: /health and /ready report it.
    with contextlib.suppress(Exception):
        await engine.start()
