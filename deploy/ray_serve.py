"""Ray Serve: the same app on N replicas behind Ray's proxy, each replica with its own engine.

    serve run deploy.ray_serve:app                       # on a Ray cluster (ray start --head ...)
    DEPLOY_RAY_REPLICAS=2 DEVICE=cuda serve run deploy.ray_serve:app

Ray is not in the project's lock (its own venv: make ray-venv). A replica builds the
app when it starts and loads the model before it returns it, so Ray routes nothing to a
replica still loading; Ray's health check asks the engine (a replica whose engine failed is
replaced). Each replica takes as many requests as the service admits (generation slots plus
queue) and a few more, so that probes and scrapes answer on a full replica and a request past
the service's admission gets its 429 rather than an unbounded wait in Ray's proxy. Settings
come from env vars: on a cluster, pass them in the application's ``runtime_env`` env_vars
(secrets such as HF_TOKEN and API_KEY through the cluster's secret store, not there).
"""

from __future__ import annotations

from typing import Any

from ray import serve

from service.deploy_settings import (
    DeploySettings,
    provider_timeout_s,
    ray_gpus_per_replica,
    requests_per_container,
)
from service.engine.base import EngineState
from service.settings import Settings

deploy_settings = DeploySettings()
settings = Settings()

# Ray counts every HTTP request against max_ongoing_requests, /ready and /metrics included: a
# replica admitting exactly its generations would hold a probe behind them in Ray's proxy.
PROBE_HEADROOM = 4


def _replicas() -> dict[str, Any]:
    """A fixed number of replicas, or Ray's autoscaler between ray_replicas and ray_max_replicas,
    aiming at one batch's generation slots of requests per replica."""
    if deploy_settings.ray_max_replicas <= deploy_settings.ray_replicas:
        return {"num_replicas": deploy_settings.ray_replicas}
    return {
        "autoscaling_config": {
            "min_replicas": deploy_settings.ray_replicas,
            "max_replicas": deploy_settings.ray_max_replicas,
            "target_ongoing_requests": settings.generation_slots,
        }
    }


@serve.deployment(
    **_replicas(),
    ray_actor_options={
        "num_cpus": deploy_settings.ray_cpus_per_replica,
        "num_gpus": ray_gpus_per_replica(deploy_settings, settings),
    },
    # Ray's per-replica limit; past it the proxy holds requests or sends them elsewhere
    # (docs.ray.io/en/latest/serve/advanced-guides/performance.html). The service's own
    # admission (slots plus queue) answers 429 first; Ray routes each request to the less
    # loaded of two replicas (power of two choices), so a 429 means both were full.
    max_ongoing_requests=requests_per_container(settings) + PROBE_HEADROOM,
    # Loading a 7B model takes minutes; Ray's default health-check timeout is 30 s.
    health_check_timeout_s=60,
    # A stopping replica gets no signal from Ray: Ray waits for its requests to end, then kills
    # the actor at this deadline (ray/serve/_private/replica.py, perform_graceful_shutdown;
    # deployment_state.py, check_stopped). Past the service's own request deadline, so every
    # stream ends first, by itself or with the service's timeout error event, never cut mid-body.
    graceful_shutdown_timeout_s=provider_timeout_s(settings),
)
@serve.ingress()
class LLMServer:
    """One replica: its engine, and the app around it."""

    async def __serve_build_asgi_app__(self) -> Any:
        from service.app import create_app
        from service.engine import create_engine
        from service.logs import configure_logging

        configure_logging(settings.log_level)
        self._engine = create_engine(settings)
        await self._engine.start()  # raises if the model fails to load: Ray retries the replica
        return create_app(settings, self._engine)

    async def check_health(self) -> None:
        """Ray's periodic health check, a liveness check: it fails only for an engine that failed
        (Ray then replaces the replica); Ray calls it once the app is built, the model loaded."""
        if self._engine.status.state is EngineState.FAILED:
            raise RuntimeError(f"engine failed: {self._engine.status.reason}")


app = LLMServer.bind()
