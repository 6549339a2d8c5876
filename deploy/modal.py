"""Modal: the image from the Dockerfile, the model loaded in @modal.enter, the app mounted as ASGI.

    modal deploy -m deploy.modal

Deploy it as a module (-m): run as a file (``modal deploy deploy/modal.py``),
Python puts deploy/ first on sys.path and ``import modal`` finds this file instead
of the modal package. Settings come from env vars at deploy time (docs/deploying.md).
"""

from pathlib import Path

import modal
from fastapi import FastAPI

from service.deploy_settings import (
    WEIGHTS_MOUNT_PATH,
    DeploySettings,
    container_env,
    provider_timeout_s,
    requests_per_container,
)
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
deploy_settings = DeploySettings()
settings = Settings()

image = modal.Image.from_dockerfile(
    ROOT / "Dockerfile", context_dir=ROOT, build_args={"MODEL_ID": settings.model}
).env(container_env(settings))
weights = modal.Volume.from_name(deploy_settings.weights_volume, create_if_missing=True)
secrets = [
    modal.Secret.from_name(name)
    for name in (deploy_settings.hf_token_secret, deploy_settings.api_key_secret)
    if name
]
app = modal.App(deploy_settings.app_name, image=image)


@app.cls(
    gpu=deploy_settings.modal_gpu,
    cpu=deploy_settings.modal_cpu,
    memory=int(deploy_settings.modal_memory_gib * 1024),  # MiB
    volumes={WEIGHTS_MOUNT_PATH: weights},
    secrets=secrets,
    min_containers=deploy_settings.min_containers,
    max_containers=deploy_settings.max_containers,
    scaledown_window=deploy_settings.scaledown_window_s,
    timeout=provider_timeout_s(settings),
    startup_timeout=deploy_settings.startup_timeout_s,
    enable_memory_snapshot=True,
)
@modal.concurrent(max_inputs=requests_per_container(settings), target_inputs=settings.generation_slots)
class Server:
    @modal.enter(snap=True)
    def create_engine(self) -> None:
        # Before the memory snapshot, without a GPU: the seconds spent importing torch and
        # transformers are restored from the snapshot on later cold starts, not repeated.
        from service.engine import create_engine
        from service.logs import configure_logging

        self.settings = Settings()
        configure_logging(self.settings.log_level)
        self.engine = create_engine(self.settings)

    @modal.enter(snap=False)
    async def load_model(self) -> None:
        # Weights go to the GPU after the restore; a model that cannot load fails the container.
        await self.engine.start()

    # Without proxy auth the URL is public: anyone who finds it can start a GPU container.
    # Clients then send Modal-Key / Modal-Secret (modal.com/docs/guide/webhook-proxy-auth).
    @modal.asgi_app(requires_proxy_auth=deploy_settings.modal_proxy_auth)
    def web(self) -> FastAPI:
        from service.app import create_app

        return create_app(self.settings, self.engine)
