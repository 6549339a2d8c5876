"""deploy/ray_serve.py on a real local Ray cluster: two replicas behind Ray's proxy.

Ray runs from a venv of its own (scripts/ray_venv.sh, built once into the user's cache) and
inside a loopback-only network namespace (``unshare -n``, root: CI runs as root), since it
binds the machine's address; its processes end with the namespace's one process, stopped by
PID if it overstays.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CHECK = Path(__file__).parent / "ray_serve_check.py"


@pytest.fixture(scope="session")
def ray_python(real_model_cache_dir: Path) -> Path:
    venv = real_model_cache_dir / "client-venvs" / "ray-serve-2.60.0"
    subprocess.run([str(ROOT / "scripts" / "ray_venv.sh"), str(venv)], check=True, timeout=900)
    return venv / "bin" / "python"


@pytest.mark.slow
def test_two_replicas_serve_the_app_behind_rays_proxy(ray_python: Path, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    script = f"ip link set lo up && exec {ray_python} {CHECK} 8000 {tmp_path} {out}"
    process = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()  # by PID: the namespace and Ray's processes go with it
            process.wait()

    assert process.returncode == 0, stderr[-4000:]
    seen = json.loads(out.read_text())
    assert seen["ready"] == 200
    assert len(seen["instances"]) == 2  # both replicas answered, each its own process and engine
    assert (seen["chat_status"], seen["completion_tokens"]) == (200, 5)
    assert seen["stream_events"][-1] == "event: done"  # the native SSE stream through Ray's proxy
    assert seen["bad_status"] == 400  # the service's own validation, not Ray's
