"""Liveness, readiness and RunPod's ping."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.engine.base import EngineState

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: 200 while the process serves")
async def health(request: Request) -> JSONResponse:
    status = request.app.state.engine.status
    if status.state is EngineState.FAILED:
        # A process whose model cannot load will never serve: let the orchestrator restart it.
        return JSONResponse({"status": "failed", "reason": status.reason}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready", summary="Readiness: 200 once the model is loaded and warmed up")
async def ready(request: Request) -> JSONResponse:
    engine = request.app.state.engine
    if request.app.state.admission.draining:
        body: dict[str, Any] = {"status": "draining", "reason": "the server is shutting down"}
        return JSONResponse(body, status_code=503)
    if not engine.ready:
        body = {"status": engine.status.state.value, "reason": engine.status.reason}
        return JSONResponse(body, status_code=503)
    body = {"status": "ready", "model": engine.model_name, **engine.status.details}
    # Which process answered: a load tester matches its start-up to the requests it served.
    body["instance"] = request.app.state.chat_service.instance.model_dump()
    if engine.status.startup is not None:
        # Seconds from process start: import (to loading), load (weights, tokenizer), warm-up, ready.
        body["startup"] = {f"{phase}_s": seconds for phase, seconds in engine.status.startup.phases().items()}
    return JSONResponse(body)


@router.get("/ping", summary="RunPod load-balancer health: 204 while loading, 200 when ready")
async def ping(request: Request) -> Response:
    engine = request.app.state.engine
    if engine.ready:
        return JSONResponse({"status": "healthy"})
    if engine.status.state is EngineState.LOADING:
        return Response(status_code=204)
    return JSONResponse({"status": engine.status.state.value}, status_code=503)
