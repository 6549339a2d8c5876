"""deploy/modal.py with the real modal package: imported offline, and `modal deploy` up to the token check.

The arguments the shim gives Modal's decorators are recorded by wrapping the real
``App.cls`` and ``modal.concurrent`` (they still run): what Modal keeps of them is
only sent to its servers on deploy, which cannot be reached from here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
import pytest
from modal._partial_function import _PartialFunctionFlags
from modal._utils.async_utils import synchronizer

ROOT = Path(__file__).resolve().parents[2]


class ModalShim:
    def __init__(self, module: ModuleType, calls: dict[str, dict[str, Any]]):
        self.module = module
        self.dockerfile = calls["from_dockerfile"]
        self.cls_options = calls["cls"]
        self.concurrency = calls["concurrent"]


def import_shim(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModalShim:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: dict[str, dict[str, Any]] = {"from_dockerfile": {}, "cls": {}, "concurrent": {}}
    real_from_dockerfile, real_cls, real_concurrent = (
        modal.Image.from_dockerfile,
        modal.App.cls,
        modal.concurrent,
    )

    def from_dockerfile(path: Any, **options: Any) -> Any:
        calls["from_dockerfile"].update(path=path, **options)
        return real_from_dockerfile(path, **options)

    def cls(self: modal.App, **options: Any) -> Any:
        calls["cls"].update(options)
        return real_cls(self, **options)

    def concurrent(**options: Any) -> Any:
        calls["concurrent"].update(options)
        return real_concurrent(**options)

    monkeypatch.setattr(modal.Image, "from_dockerfile", from_dockerfile)
    monkeypatch.setattr(modal.App, "cls", cls)
    monkeypatch.setattr(modal, "concurrent", concurrent)
    monkeypatch.delitem(sys.modules, "deploy.modal", raising=False)
    module = importlib.import_module("deploy.modal")
    monkeypatch.delitem(sys.modules, "deploy.modal")  # the next import sees the next env
    return ModalShim(module, calls)


@pytest.fixture
def shim(monkeypatch: pytest.MonkeyPatch) -> ModalShim:
    for name in (
        "MODEL_ID",
        "ENGINE",
        "MAX_CONCURRENCY",
        "MAX_QUEUE",
        "DEPLOY_MODAL_GPU",
        "DEPLOY_MODAL_PROXY_AUTH",
    ):
        monkeypatch.delenv(name, raising=False)
    return import_shim(monkeypatch)


def partial_function_flags(cls: modal.Cls) -> dict[str, Any]:
    return {
        name: synchronizer._translate_in(partial).flags
        for name, partial in cls._get_partial_functions().items()
    }


def test_the_app_has_one_class_on_the_dockerfile_image(shim: ModalShim) -> None:
    assert isinstance(shim.module.app, modal.App)
    assert shim.module.app.name == "llm-serving"
    assert isinstance(shim.module.Server, modal.Cls)
    spec = shim.module.Server._get_class_service_function()._spec_
    assert spec.image is synchronizer._translate_in(shim.module.image)
    assert shim.dockerfile["path"] == ROOT / "Dockerfile"
    assert shim.dockerfile["context_dir"] == ROOT
    assert shim.dockerfile["build_args"] == {"MODEL_ID": "mistralai/Mistral-7B-Instruct-v0.3"}


def test_gpu_is_an_a100_80gb_by_default_and_set_by_env(
    shim: ModalShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shim.cls_options["gpu"] == "A100-80GB"
    assert import_shim(monkeypatch, DEPLOY_MODAL_GPU="H100").cls_options["gpu"] == "H100"


def test_weights_volume_secrets_and_scaling(shim: ModalShim) -> None:
    options = shim.cls_options
    assert set(options["volumes"]) == {"/models"}
    assert isinstance(options["volumes"]["/models"], modal.Volume)
    assert len(options["secrets"]) == 1  # the Hugging Face token; no API key secret by default
    assert options["min_containers"] == 0
    assert options["scaledown_window"] == 300
    assert options["enable_memory_snapshot"] is True
    assert options["timeout"] > 600, "Modal must not cut a stream before the service's own deadline"


def test_concurrency_follows_the_admission_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    default = import_shim(monkeypatch, MAX_QUEUE="16")  # the batched engine: 16 in a batch
    assert default.concurrency == {"max_inputs": 32, "target_inputs": 16}

    sequential = import_shim(monkeypatch, ENGINE="sequential", MAX_QUEUE="16")
    assert sequential.concurrency == {"max_inputs": 17, "target_inputs": 1}

    wider = import_shim(monkeypatch, MAX_CONCURRENCY="4", MAX_QUEUE="4")
    assert wider.concurrency == {"max_inputs": 8, "target_inputs": 4}


def webhook_config(shim: ModalShim) -> Any:
    web = synchronizer._translate_in(shim.module.Server._get_partial_functions()["web"])
    return web.params.webhook_config


def test_model_loads_in_enter_and_the_web_endpoint_is_asgi(shim: ModalShim) -> None:
    flags = partial_function_flags(shim.module.Server)
    assert flags["create_engine"] & _PartialFunctionFlags.ENTER_PRE_SNAPSHOT
    assert flags["load_model"] & _PartialFunctionFlags.ENTER_POST_SNAPSHOT
    assert flags["web"] & _PartialFunctionFlags.WEB_INTERFACE
    assert webhook_config(shim).type == modal.config.api_pb2.WEBHOOK_TYPE_ASGI_APP


def test_the_endpoint_requires_modal_proxy_auth_unless_deployed_public(
    shim: ModalShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert webhook_config(shim).requires_proxy_auth is True
    public = import_shim(monkeypatch, DEPLOY_MODAL_PROXY_AUTH="false")
    assert webhook_config(public).requires_proxy_auth is False


def test_the_container_size_is_reserved_so_the_bill_is_known(shim: ModalShim) -> None:
    assert (shim.cls_options["cpu"], shim.cls_options["memory"]) == (4, 32 * 1024)


def test_the_container_env_carries_the_model_but_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    shim = import_shim(monkeypatch, MODEL_ID="org/some-model", API_KEY="sk-not-in-the-image")
    assert shim.module.settings.model == "org/some-model"
    assert "sk-not-in-the-image" not in repr(shim.module.image.__dict__)


def test_web_returns_the_service_app_around_the_engine_built_in_enter(
    shim: ModalShim, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi import FastAPI

    monkeypatch.setenv("MODEL_ID", "tiny-random")
    monkeypatch.setenv("CACHE_DIR", str(model_cache_dir))
    server = shim.module.Server._get_user_cls()()

    server.create_engine()  # no model loaded: only what goes into the memory snapshot
    app = server.web()

    assert isinstance(app, FastAPI)
    assert app.state.engine is server.engine
    assert app.state.settings.model == "tiny-random"


def test_the_container_logs_our_info_lines(
    shim: ModalShim, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    monkeypatch.setenv("MODEL_ID", "tiny-random")
    monkeypatch.setenv("CACHE_DIR", str(model_cache_dir))
    logging.getLogger().setLevel(logging.WARNING)  # what a platform's default leaves

    shim.module.Server._get_user_cls()().create_engine()

    assert logging.getLogger("service.engine.base").isEnabledFor(logging.INFO)  # "engine ready" shows


def run_modal_deploy(*target: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODAL_")}
    # No token, no config file, and a server address on loopback where nothing listens.
    env.update({"HOME": str(home), "MODAL_SERVER_URL": "http://127.0.0.1:9"})
    modal_cli = Path(sys.executable).with_name("modal")
    return subprocess.run(
        [str(modal_cli), "deploy", *target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_modal_deploy_as_a_module_stops_only_at_the_missing_token(tmp_path: Path) -> None:
    result = run_modal_deploy("-m", "deploy.modal", home=tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Token missing" in output, output
    assert "Traceback" not in output
    assert "Error" not in output.replace("Error: Token missing", "")


def test_modal_deploy_of_the_file_fails_because_it_shadows_the_package(tmp_path: Path) -> None:
    result = run_modal_deploy("deploy/modal.py", home=tmp_path)

    assert "module 'modal' has no attribute" in result.stdout + result.stderr
