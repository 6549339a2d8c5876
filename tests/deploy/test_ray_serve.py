"""deploy/ray_serve.py on a real local Ray cluster: two replicas behind Ray's proxy.

Ray runs from a venv of its own (``make ray-venv``, built once into the user's cache) and
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
LONG = 1800  # ray_serve_check.LONG: the tokens of its long streams


@pytest.fixture(scope="session")
def ray_python(real_model_cache_dir: Path) -> Path:
    """The Makefile's Ray venv (``make ray-venv``), built once into the user's cache."""
    venv = real_model_cache_dir / "client-venvs" / "ray-serve-2.60.0"
    subprocess.run(["make", "-s", "ray-venv", f"RAY_VENV={venv}"], cwd=ROOT, check=True, timeout=900)
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
    assert seen["bad_status"] == 400  # the service's own validation, not Ray's

    # Token by token through Ray's proxy: a buffering proxy would deliver the text in a few reads
    # at the end. Each piece of text came in its own read, the first long before the last.
    stream = seen["stream"]
    assert stream["reads"] >= stream["tokens"] / 2 > 50, stream
    assert stream["first_s"] < stream["last_s"] / 4, stream

    # A client that leaves is cancelled on the replica that served it (the other saw nothing),
    # well before the generation could have ended on its own.
    cancel = seen["cancel"]
    cancelled = {instance: samples.get("cancelled", 0) for instance, samples in cancel["replicas"].items()}
    assert sorted(cancelled.values()) == [0, 1], cancel
    assert cancel["after_s"] < 3, cancel
    assert all(samples["llm_requests_running"] == 0 for samples in cancel["replicas"].values()), cancel

    # Two held streams fill both replicas' one slot; the next request gets the service's 429
    # (its body and Retry-After), not Ray's queue or its own error.
    overload = seen["overload"]
    assert (overload["opened"], overload["status"]) == (3, 429), overload
    assert overload["body"]["error"]["code"] == "overloaded"
    assert int(overload["retry_after"]) >= 1

    # SIGKILL one replica's process: every request meanwhile is served by the other, and Ray
    # starts a replacement (a third instance id) that serves too.
    kill = seen["kill"]
    assert kill["new_instance"] not in [None, *seen["instances"]], kill
    assert kill["failed"] == 0, kill
    assert kill["served"] > 0, kill

    # Deleting the app waits for the running stream (seconds long: Ray's old deadline, the drain
    # timeout, cut it mid-body), which ends whole: done, or the service's timeout event at its
    # request deadline, whichever this machine's speed reaches first. Ray's graceful-shutdown
    # deadline lies past both.
    shutdown = seen["shutdown"]
    event, data = shutdown["last_event"]
    assert event in ("event: done", "event: error"), shutdown  # not "cut: ...": a truncated body
    ending = json.loads(data.removeprefix("data: "))
    if event == "event: done":
        assert ending["usage"]["completion_tokens"] == LONG, shutdown
    else:
        assert ending["error"]["code"] == "request_timeout", shutdown
    assert shutdown["deleted"], shutdown
