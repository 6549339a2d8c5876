"""service/deploy_settings.py: the shims' knobs, and concurrency that follows admission settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest.measure.cost import find_price
from service.deploy_settings import (
    DeploySettings,
    container_env,
    ray_gpus_per_replica,
    requests_per_container,
)
from service.settings import Settings


def test_defaults_scale_to_zero_on_gpus_the_load_tester_can_price() -> None:
    deploy = DeploySettings()
    assert deploy.modal_gpu == "A100-80GB"
    assert deploy.beam_gpu == "H100"
    assert find_price("modal", deploy.modal_gpu) is not None
    assert find_price("beam", deploy.beam_gpu) is not None
    assert deploy.min_containers == 0
    assert deploy.modal_proxy_auth is True


def test_env_vars_are_prefixed_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_MODAL_GPU", "H100")
    monkeypatch.setenv("DEPLOY_MIN_CONTAINERS", "1")
    deploy = DeploySettings()
    assert deploy.modal_gpu == "H100"
    assert deploy.min_containers == 1


def test_a_container_admits_its_generation_slots_plus_its_queue(
    make_settings: Callable[..., Settings],
) -> None:
    default = make_settings(max_queue=16)
    # max_concurrency 0 means what the engine runs at once: 1, or the batched engine's batch size
    engine_slots = default.max_batch_size if default.engine == "batched" else 1
    assert default.generation_slots == engine_slots
    assert requests_per_container(default) == engine_slots + 16
    assert requests_per_container(make_settings(max_concurrency=4, max_queue=0)) == 4


def test_containers_get_the_deploy_time_settings_but_no_secret(
    make_settings: Callable[..., Settings],
) -> None:
    env = container_env(
        make_settings(max_queue=3, api_key="sk-do-not-leak", request_timeout=300, drain_timeout=20)
    )
    assert env["MODEL_ID"] == "tiny-random"
    assert env["MAX_QUEUE"] == "3"
    # The provider's own timeout is computed from these: the containers must run with the same.
    assert (
        Settings(**{name.lower(): value for name, value in env.items() if name.isupper()}).request_timeout
        == 300
    )
    assert (env["REQUEST_TIMEOUT"], env["DRAIN_TIMEOUT"]) == ("300.0", "20.0")
    assert env["HF_HOME"] == "/models/huggingface"
    assert "sk-do-not-leak" not in env.values()


@pytest.mark.parametrize(
    ("device", "explicit", "gpus"),
    [("cuda", None, 1), ("cuda:1", None, 1), ("cpu", None, 0), ("auto", None, 0), ("cpu", 0.5, 0.5)],
)
def test_a_ray_replica_on_cuda_reserves_a_gpu_unless_told(
    make_settings: Callable[..., Settings], device: str, explicit: float | None, gpus: float
) -> None:
    deploy = DeploySettings(ray_gpus_per_replica=explicit)
    assert ray_gpus_per_replica(deploy, make_settings(device=device)) == gpus
