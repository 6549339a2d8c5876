"""docs/deploying.md documents what the shims and the image do."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.deploy_settings import DeploySettings

README = (Path(__file__).resolve().parents[2] / "docs" / "deploying.md").read_text()


@pytest.mark.parametrize("field", sorted(DeploySettings.model_fields))
def test_every_deploy_setting_is_documented(field: str) -> None:
    assert f"DEPLOY_{field.upper()}" in README


@pytest.mark.parametrize(
    "command",
    [
        "docker build -t llm-serving .",
        "--secret id=hf_token,env=HF_TOKEN",
        "modal deploy -m deploy.modal",
        "beam deploy deploy/beam.py:server",
        "python deploy/runpod_handler.py",
        "PORT_HEALTH=8000",
        "python loadtest/run.py --url",
    ],
)
def test_the_exact_deploy_commands_are_there(command: str) -> None:
    assert command in README


@pytest.mark.parametrize("provider", ["modal", "beam", "runpod", "runpod-queue"])
def test_the_load_tester_is_pointed_at_each_provider(provider: str) -> None:
    assert f"--provider {provider} " in README
