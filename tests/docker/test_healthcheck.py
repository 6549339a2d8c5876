"""docker/healthcheck.py against a live server: healthy when /health is 200, not when nothing listens."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def run_healthcheck(port: int) -> int:
    env = {"PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, timeout=30).returncode


def test_healthy_when_the_server_answers(server_url: str) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    assert run_healthcheck(port) == 0


def test_unhealthy_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    assert run_healthcheck(free_port) == 1
