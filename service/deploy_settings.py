"""What the provider shims in deploy/ need to know, read from env vars at deploy time.

The shims only import and mount; their knobs (GPU, containers, volume, secrets)
live here so that each is described once, and so that the request concurrency
each provider routes to one container follows the service's own admission
settings instead of a second number that could disagree with them.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.settings import Settings

# Where provider volumes are mounted; the image's HF_HOME (/models/huggingface) is inside it,
# so weights fetched at the first start are found by every later one.
WEIGHTS_MOUNT_PATH = "/models"
HF_HOME = f"{WEIGHTS_MOUNT_PATH}/huggingface"


class DeploySettings(BaseSettings):
    """Provider-side configuration of the shims; env vars are prefixed ``DEPLOY_``."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_", extra="ignore")

    app_name: str = Field("llm-serving", description="App (Modal, Beam) name.")
    modal_gpu: str = Field("A100-80GB", description="Modal GPU type, e.g. 'H100', 'L40S', 'A100-80GB'.")
    modal_proxy_auth: bool = Field(
        True,
        description="Modal: require the Modal-Key and Modal-Secret headers (a workspace proxy auth "
        "token) on every request, so that strangers cannot wake a GPU; false makes the URL public.",
    )
    # Modal bills the larger of the reservation and the use (modal.com/docs/guide/resources); an
    # explicit reservation makes the bill, and the load tester's cost, predictable.
    modal_cpu: float = Field(4, gt=0, description="Modal CPU cores reserved per container.")
    modal_memory_gib: float = Field(32, gt=0, description="Modal memory reserved per container, GiB.")
    # Beam's available GPUs are A10G, RTX4090 and H100 (docs.beam.cloud/v2/environment/gpu); the
    # SDK also accepts types (A100-80, ...) that Beam does not currently offer.
    beam_gpu: str = Field("H100", description="Beam GPU type: 'H100', 'A10G' or 'RTX4090'.")
    beam_cpu: float = Field(4, gt=0, description="Beam CPU cores per container.")
    beam_memory_gib: int = Field(
        32, gt=0, description="Beam memory per container, GiB (weights load through RAM)."
    )
    ray_replicas: int = Field(1, ge=1, description="Ray Serve: replicas, each with its own engine.")
    ray_max_replicas: int = Field(
        0, ge=0, description="Ray Serve: above ray_replicas, Ray autoscales up to this many (0: fixed)."
    )
    ray_cpus_per_replica: float = Field(1, gt=0, description="Ray Serve: CPUs each replica reserves.")
    ray_gpus_per_replica: float | None = Field(
        None,
        ge=0,
        description="Ray Serve: GPUs each replica reserves (default: 1 when DEVICE is cuda, else 0).",
    )
    min_containers: int = Field(0, ge=0, description="Containers kept running when idle (0: scale to zero).")
    max_containers: int = Field(4, ge=1, description="Most containers the autoscaler starts.")
    scaledown_window_s: int = Field(
        300, ge=2, description="Seconds an idle container stays up (Modal scaledown_window, Beam keep_warm)."
    )
    startup_timeout_s: int = Field(
        1800, ge=60, description="Seconds a container may take to download and load the weights."
    )
    weights_volume: str = Field(
        "llm-serving-weights", description=f"Provider volume mounted at {WEIGHTS_MOUNT_PATH} for HF_HOME."
    )
    hf_token_secret: str = Field(
        "huggingface-secret",
        description="Provider secret holding HF_TOKEN, for gated models ('' for none).",
    )
    api_key_secret: str = Field(
        "", description="Provider secret holding API_KEY, to require a bearer key ('' for none)."
    )


def beam_secrets(deploy: DeploySettings) -> list[str]:
    """Beam secrets become env vars of the same name, so they are named HF_TOKEN and API_KEY."""
    wanted = {"HF_TOKEN": deploy.hf_token_secret, "API_KEY": deploy.api_key_secret}
    return [env_name for env_name, provider_secret in wanted.items() if provider_secret]


def ray_gpus_per_replica(deploy: DeploySettings, settings: Settings) -> float:
    """A replica on CUDA reserves a GPU of its own unless told otherwise; Ray places it there."""
    if deploy.ray_gpus_per_replica is not None:
        return deploy.ray_gpus_per_replica
    return 1 if settings.device.startswith("cuda") else 0


def requests_per_container(settings: Settings) -> int:
    """Requests one container admits: generating plus waiting; beyond this the service answers 429."""
    return settings.generation_slots + settings.max_queue


def provider_timeout_s(settings: Settings) -> int:
    """How long the provider lets one request run: past the service's own deadline and drain.

    The service ends a request itself at ``request_timeout``; the provider's limit is only
    a backstop, so it must not cut a stream first. No deadline (0) gets a day.
    """
    if settings.request_timeout == 0:
        return 24 * 3600
    return int(settings.request_timeout + settings.drain_timeout) + 30


def container_env(settings: Settings) -> dict[str, str]:
    """The service settings chosen at deploy time, passed to the containers as env vars.

    The model and the settings the shims' scaling and provider timeouts are computed
    from (so the containers and the provider agree on them): anything secret (API_KEY,
    HF_TOKEN) travels as a provider secret, never in the image or its env.
    """
    return {
        "MODEL_ID": settings.model,
        "ENGINE": settings.engine,
        "MAX_BATCH_SIZE": str(settings.max_batch_size),
        "MAX_CONCURRENCY": str(settings.max_concurrency),
        "MAX_QUEUE": str(settings.max_queue),
        "QUEUE_TIMEOUT": str(settings.queue_timeout),
        "REQUEST_TIMEOUT": str(settings.request_timeout),
        "DRAIN_TIMEOUT": str(settings.drain_timeout),
        "SSE_PING_INTERVAL": str(settings.sse_ping_interval),
        "HF_HOME": HF_HOME,
    }
