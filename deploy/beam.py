"""Beam: the image from the Dockerfile, the model loaded in on_start, the app returned as ASGI.

    beam deploy deploy/beam.py:server

Beam imports this file as the module ``deploy.beam`` (from the working directory),
so it does not shadow the ``beam`` package. Settings come from env vars at deploy
time (docs/deploying.md).
"""

from pathlib import Path
from typing import Any

import beam
from fastapi import FastAPI

from service.deploy_settings import (
    WEIGHTS_MOUNT_PATH,
    DeploySettings,
    beam_secrets,
    container_env,
    provider_timeout_s,
    requests_per_container,
)
from service.engine.base import Engine
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
deploy_settings = DeploySettings()
settings = Settings()


async def load_engine() -> Engine:
    """Beam's on_start: runs once per container before it serves; the engine is its value."""
    from service.engine import create_engine
    from service.logs import configure_logging

    container_settings = Settings()
    configure_logging(container_settings.log_level)
    engine = create_engine(container_settings)
    await engine.start()  # a model that cannot load fails the container
    return engine


@beam.asgi(
    name=deploy_settings.app_name,
    image=beam.Image.from_dockerfile(
        str(ROOT / "Dockerfile"), context_dir=str(ROOT), build_args={"MODEL_ID": settings.model}
    ),
    env=container_env(settings),
    secrets=beam_secrets(deploy_settings),
    gpu=deploy_settings.beam_gpu,
    cpu=deploy_settings.beam_cpu,
    memory=f"{deploy_settings.beam_memory_gib}Gi",
    volumes=[beam.Volume(name=deploy_settings.weights_volume, mount_path=WEIGHTS_MOUNT_PATH)],
    on_start=load_engine,
    keep_warm_seconds=deploy_settings.scaledown_window_s,
    concurrent_requests=requests_per_container(settings),
    autoscaler=beam.QueueDepthAutoscaler(
        min_containers=deploy_settings.min_containers,
        max_containers=deploy_settings.max_containers,
        tasks_per_container=settings.generation_slots,
    ),
    timeout=provider_timeout_s(settings),
)
def server(context: Any) -> FastAPI:
    from service.app import create_app

    # context is Beam's FunctionContext; on_start_value is what load_engine returned.
    return create_app(Settings(), context.on_start_value)
