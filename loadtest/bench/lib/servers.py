"""The servers under test: our ``python -m service`` per engine, and ``transformers serve``
with and without continuous batching. Each is a command for ``spawn_server`` plus how
the one OpenAI-compatible client asks it for an exact output length.

``transformers serve`` (transformers/cli/serve.py, cli/serving/*.py, read in 5.x):
- the positional model argument preloads the model before uvicorn listens and pins the
  server to it (no idle unload, no reload); a local directory works as the model id;
- it has /health but no /ready; /health answers once the preloaded model is in;
- unknown request fields are a 422, so ``ignore_eos`` cannot be sent; an exact length is a
  ``generation_config`` JSON string, which replaces the model's generation config: with
  no ``eos_token_id`` in it, generate() never stops early and continuous batching logs
  "eos_token_id not set ... disabled"; ``min_new_tokens`` makes the intent explicit;
- its stream has no ``data: [DONE]``; the last chunk carries finish_reason and usage;
- the paged cache of ``--continuous-batching`` is sized with ``--cb-num-blocks`` and
  ``--cb-max-batch-tokens`` (auto-sized by default: on CPU that was slow and took 6.6 GB);
- it has no thread flag, so ``OMP_NUM_THREADS`` gives it the torch thread count ours gets;
- with continuous batching it ignores SIGINT; ``spawn_server`` stops it with SIGTERM,
  then SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.clients import OpenAIClient

# Our servers by name: the flags each adds to ``python -m service``. sequential-static is
# generate() with a static cache (compiled decode step on CUDA): for GPUs, not run by default.
OUR_ENGINE_FLAGS = {
    "sequential": "--engine sequential",
    "batched": "--engine batched",
    "sequential-static": "--engine sequential --static-cache",
}
OUR_ENGINES = tuple(OUR_ENGINE_FLAGS)
DEFAULT_ENGINES = ("sequential", "batched")
TRANSFORMERS_SERVE = "transformers-serve"
TRANSFORMERS_SERVE_CB = "transformers-serve-cb"
VLLM = "vllm"
PEERS = (TRANSFORMERS_SERVE, TRANSFORMERS_SERVE_CB, VLLM)


@dataclass(frozen=True)
class ServerUnderTest:
    name: str
    command: str  # for spawn_server: it appends --host/--port
    ready_path: str
    ignore_eos: bool = True
    extra_body: dict[str, Any] = field(default_factory=dict)
    ends_at_usage: bool = False
    unavailable_reason: str | None = None  # set: not run, reported as not available

    def client(self, base_url: str, tokens: int) -> OpenAIClient:
        """The one client, greedy as raw generate is, with this server's exact-length mechanism."""
        return OpenAIClient(
            base_url,
            max_tokens=tokens,
            ignore_eos=self.ignore_eos,
            extra_body={"temperature": 0, **self.extra_body},
            ends_at_usage=self.ends_at_usage,
        )


def service_engine_flag_supported() -> bool:
    """Whether ``python -m service --help`` lists ``--engine`` (main adds it; older branches lack it)."""
    result = subprocess.run(
        [sys.executable, "-m", "service", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    return "--engine" in result.stdout


def our_servers(
    model_dir: Path,
    engines: list[str],
    device: str,
    dtype: str,
    threads: int,
    engine_flag: bool,
    static_cache_tokens: int = 0,
) -> list[ServerUnderTest]:
    """One server per engine. Without an ``--engine`` flag the service has only the sequential
    engine: that one runs without the flag, the others are reported as not available.

    ``static_cache_tokens`` sizes sequential-static's cache (0: the model's context, which for
    a 7B model is 32k tokens: 4 GiB of cache that attention would read at every step).
    """
    servers = []
    for engine in engines:
        command = (
            # this interpreter: a machine may have python3 and no python
            f"{shlex.quote(sys.executable)} -m service --model {shlex.quote(str(model_dir))} "
            f"--device {device} --dtype {dtype} "
            f"--torch-threads {threads} --log-level warning "
            # Every request of a level must be admitted and wait as long as it takes.
            "--max-queue 256 --queue-timeout 0"
        )
        reason = None
        if engine_flag:
            command += f" {OUR_ENGINE_FLAGS[engine]}"
            if engine == "sequential-static" and static_cache_tokens:
                command += f" --static-cache-tokens {static_cache_tokens}"
        elif engine != "sequential":
            reason = "python -m service has no --engine flag on this branch"
        servers.append(ServerUnderTest(engine, command, "/ready", unavailable_reason=reason))
    return servers


def transformers_serve_servers(
    model_dir: Path,
    tokens: int,
    device: str,
    dtype: str,
    threads: int,
    cb_num_blocks: int,
    cb_max_batch_tokens: int,
) -> list[ServerUnderTest]:
    """``transformers serve`` without and with ``--continuous-batching`` (0 sizes: the library's auto)."""
    base = (
        f"env OMP_NUM_THREADS={threads} transformers serve {shlex.quote(str(model_dir))} "
        f"--device {device} --dtype {dtype} --log-level warning"
    )
    cb_flags = " --continuous-batching"
    if cb_num_blocks:
        cb_flags += f" --cb-num-blocks {cb_num_blocks}"
    if cb_max_batch_tokens:
        cb_flags += f" --cb-max-batch-tokens {cb_max_batch_tokens}"
    exact_length = {"generation_config": json.dumps({"max_new_tokens": tokens, "min_new_tokens": tokens})}
    options: dict[str, Any] = {
        "ready_path": "/health",
        "ignore_eos": False,
        "extra_body": exact_length,
        "ends_at_usage": True,
    }
    return [
        ServerUnderTest(TRANSFORMERS_SERVE, base, **options),
        ServerUnderTest(TRANSFORMERS_SERVE_CB, base + cb_flags, **options),
    ]


def vllm_server(venv: Path, model_dir: Path, dtype: str, threads: int, max_model_len: int) -> ServerUnderTest:
    """vLLM's CPU build from its own venv (scripts/peer_vllm.sh), on ``threads`` cores.

    The recipe of issue #18, measured on the 2-core machine: Intel OpenMP preloaded and the
    threads bound to cores 0..threads-1 (the default binding, "auto", used one core; libgomp
    bound so was 5x slower); its OpenAI server module, since ``vllm serve`` fails in this
    repack (no ``vllm`` distribution for its version lookup); it listens only once the model is
    loaded and ``/health`` answers then. It takes ``ignore_eos`` like ours.
    """
    if not (venv / "bin" / "python").exists():
        reason = f"no venv at {venv}: scripts/peer_vllm.sh"
        return ServerUnderTest(VLLM, "", "/health", unavailable_reason=reason)
    environment = {
        "LD_PRELOAD": venv / "lib" / "libiomp5.so",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}" if threads > 1 else "0",
        "VLLM_CPU_KVCACHE_SPACE": 2,  # GiB
        "VLLM_USE_AOT_COMPILE": 0,
        "HF_HUB_OFFLINE": 1,
        "VLLM_NO_USAGE_STATS": 1,
    }
    command = (
        "env "
        + " ".join(f"{name}={shlex.quote(str(value))}" for name, value in environment.items())
        + f" {shlex.quote(str(venv / 'bin' / 'python'))} -m vllm.entrypoints.openai.api_server"
        + f" --model {shlex.quote(str(model_dir))} --dtype {dtype} --max-model-len {max_model_len}"
        + " --uvicorn-log-level warning"
    )
    return ServerUnderTest(VLLM, command, "/health")
