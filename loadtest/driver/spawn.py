"""``--spawn "COMMAND"``: start the server, time process start to ``/ready``, stop it afterwards.

So a local cold start is measured end to end: interpreter start, imports, model
load and warm-up, as a serverless platform's cold start would include them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class SpawnedServer:
    url: str
    command: list[str]
    pid: int
    spawned_at_unix: float
    ready_s: float  # process start to the first 200 from /ready


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command_and_url(command: str, url: str | None) -> tuple[list[str], str]:
    """The argv to run and the URL it serves; a command without ``--port`` gets a free port on 127.0.0.1."""
    argv = shlex.split(command)
    if url is not None:
        return argv, url.rstrip("/")
    if "--port" in argv:
        port = argv[argv.index("--port") + 1]
        host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
        host = "127.0.0.1" if host == "0.0.0.0" else host
        return argv, f"http://{host}:{port}"
    port = free_port()
    return [*argv, "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}"


_SECRET_FLAG_WORDS = ("key", "token", "secret", "password")


def redact_command(argv: list[str]) -> list[str]:
    """The argv with the values of secret-looking flags (``--api-key X``, ``--token=X``) replaced."""
    redacted: list[str] = []
    hide_next = False
    for arg in argv:
        flag, equals, _ = arg.partition("=")
        secret_flag = arg.startswith("-") and any(word in flag.lower() for word in _SECRET_FLAG_WORDS)
        if hide_next:
            redacted.append("***")
        elif secret_flag and equals:
            redacted.append(f"{flag}=***")
        else:
            redacted.append(arg)
        hide_next = secret_flag and not equals
    return redacted


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def spawn_server(
    command: str,
    log_path: Path,
    url: str | None = None,
    timeout_s: float = 600.0,
    ready_path: str = "/ready",
    stop_grace_s: float = 30.0,
) -> Iterator[SpawnedServer]:
    """Start ``command``, wait until ``ready_path`` answers 200, yield, then SIGTERM it
    (SIGKILL after ``stop_grace_s``). Peers without /ready pass their own path
    (``transformers serve``: /health, which answers once its preloaded model is in).

    Raises RuntimeError if the process exits first, TimeoutError if it is not ready in ``timeout_s``.
    """
    argv, server_url = command_and_url(command, url)
    # `python` in the command means this interpreter's environment (the venv), not the first on PATH.
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        spawned_at_unix = time.time()
        spawned = time.perf_counter()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            ready_url = f"{server_url}{ready_path}"
            ready_s = _wait_until_ready(process, ready_url, spawned, timeout_s, log_path)
            yield SpawnedServer(server_url, argv, process.pid, spawned_at_unix, ready_s)
        finally:
            process.terminate()
            try:
                process.wait(stop_grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(
    process: subprocess.Popen[bytes], ready_url: str, spawned: float, timeout_s: float, log_path: Path
) -> float:
    with httpx.Client(timeout=5) as http:
        while time.perf_counter() - spawned < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if http.get(ready_url).status_code == 200:
                    return time.perf_counter() - spawned
            time.sleep(0.05)
    raise TimeoutError(f"{ready_url} not 200 after {timeout_s:.0f} s:\n{_tail(log_path)}")
