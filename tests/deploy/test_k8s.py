"""deploy/k8s/: valid for the oldest and newest Kubernetes that kubernetes-validate knows, and
in agreement with the code (routes, settings, drain, metrics, paths). Offline: no cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from service.app import create_app
from service.deploy_settings import HF_HOME, WEIGHTS_MOUNT_PATH
from service.settings import Settings
from tests.conftest import serve
from tests.fakes import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# Custom resources: kubernetes-validate has no schema for them; their fields are checked below.
CUSTOM_KINDS = {"ServiceMonitor", "ScaledObject"}


def manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents = {}
    for name in kustomization["resources"]:
        document = yaml.safe_load((K8S / name).read_text())
        documents[document["kind"]] = document
    return documents


def known_versions() -> list[str]:
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    strict = (re.fullmatch(r"v([\d.]+)-local-strict", path.name) for path in schemas.iterdir())
    return sorted({match[1] for match in strict if match}, key=Version)


def container(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def env(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {item["name"]: item for item in container(documents)["env"]}


@pytest.mark.parametrize("version", [known_versions()[0], known_versions()[-1]])
def test_every_manifest_is_strictly_valid_for_the_oldest_and_newest_kubernetes(version: str) -> None:
    for kind, document in manifests().items():
        if kind not in CUSTOM_KINDS:
            kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    deployment = manifests()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, known_versions()[-1], strict=True)


def test_every_file_is_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])

    assert listed == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_probes_and_the_scrape_path_are_routes_the_app_serves() -> None:
    documents = manifests()
    probes = {
        name: container(documents)[name]["httpGet"]["path"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    scraped = documents["ServiceMonitor"]["spec"]["endpoints"][0]["path"]
    with serve(create_app(Settings(model="scripted"), ScriptedEngine())) as url:
        statuses = {path: httpx.get(url + path).status_code for path in {*probes.values(), scraped}}
        metrics = httpx.get(url + scraped).text

    assert probes == {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    assert set(statuses.values()) == {200}
    query = documents["ScaledObject"]["spec"]["triggers"][0]["metadata"]["query"]
    metric = re.match(r"sum\((\w+)\{", query)
    assert metric is not None
    assert re.search(rf"^{metric[1]} ", metrics, flags=re.MULTILINE), f"{metric[1]} is not in /metrics"


def test_every_env_var_is_a_setting_or_huggingfaces() -> None:
    names = set(env(manifests()))
    settings_env = {field.upper() for field in Settings.model_fields} | {"MODEL_ID"}

    assert names - settings_env == {"HF_HOME", "HF_TOKEN"}
    for secret in ("HF_TOKEN", "API_KEY"):
        assert "value" not in env(manifests())[secret], f"{secret} must come from the Secret"


def test_the_grace_period_outlasts_prestop_and_the_drain() -> None:
    documents = manifests()
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container(documents)["lifecycle"]["preStop"]["exec"]["command"]
    drain_s = float(env(documents)["DRAIN_TIMEOUT"]["value"])

    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain_s + 10
    assert documents["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_weights_live_where_the_image_and_the_provider_shims_put_them() -> None:
    documents = manifests()
    variables = env(documents)
    mounts = {mount["name"]: mount["mountPath"] for mount in container(documents)["volumeMounts"]}
    dockerfile = (REPO / "Dockerfile").read_text()

    assert mounts["models"] == WEIGHTS_MOUNT_PATH
    assert variables["HF_HOME"]["value"] == HF_HOME
    assert f"HF_HOME={HF_HOME}" in dockerfile
    assert variables["CACHE_DIR"]["value"].startswith(WEIGHTS_MOUNT_PATH + "/")
    assert mounts["shm"] == "/dev/shm"
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile)
    assert uid is not None
    security = documents["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsUser"] == security["fsGroup"] == int(uid[1])


def test_selectors_find_the_pods_and_the_ports_agree() -> None:
    documents = manifests()
    pod_labels = documents["Deployment"]["spec"]["template"]["metadata"]["labels"]
    port = container(documents)["ports"][0]

    for selector in (
        documents["Deployment"]["spec"]["selector"]["matchLabels"],
        documents["Service"]["spec"]["selector"],
        documents["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert documents["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= (
        documents["Service"]["metadata"]["labels"].items()
    )
    assert port["containerPort"] == int(env(documents)["PORT"]["value"])
    assert documents["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    target = documents["ScaledObject"]["spec"]["scaleTargetRef"]["name"]
    assert target == documents["Deployment"]["metadata"]["name"]
    assert container(documents)["resources"]["limits"]["nvidia.com/gpu"] == "1"
