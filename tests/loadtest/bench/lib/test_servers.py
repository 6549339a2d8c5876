"""The servers under test: their commands, and how each is asked for an exact length."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from loadtest.bench.lib.servers import (
    our_servers,
    service_engine_flag_supported,
    transformers_serve_servers,
    vllm_server,
)

MODEL_DIR = Path("/models/bench 10m")


def test_with_the_engine_flag_each_engine_gets_its_own_server() -> None:
    servers = our_servers(MODEL_DIR, ["sequential", "batched"], "cpu", "float32", 1, engine_flag=True)

    assert [server.name for server in servers] == ["sequential", "batched"]
    assert shlex.split(servers[1].command)[-2:] == ["--engine", "batched"]
    assert "/models/bench 10m" in shlex.split(servers[0].command)
    assert all(server.unavailable_reason is None for server in servers)


def test_without_the_engine_flag_only_the_sequential_engine_runs() -> None:
    sequential, batched = our_servers(
        MODEL_DIR, ["sequential", "batched"], "cpu", "float32", 1, engine_flag=False
    )

    assert "--engine" not in sequential.command
    assert sequential.unavailable_reason is None
    assert batched.unavailable_reason == "python -m service has no --engine flag on this branch"


def test_our_server_is_asked_for_an_exact_greedy_length_with_ignore_eos() -> None:
    (sequential,) = our_servers(MODEL_DIR, ["sequential"], "cpu", "float32", 1, engine_flag=False)

    body = sequential.client("http://x", 16).request_body("hi")

    assert body["ignore_eos"] is True
    assert body["max_tokens"] == 16
    assert body["temperature"] == 0


def test_transformers_serve_gets_a_generation_config_and_the_cb_cache_size() -> None:
    plain, cb = transformers_serve_servers(MODEL_DIR, 128, "cpu", "float32", 1, 32, 256)

    body = cb.client("http://x", 128).request_body("hi")
    assert "ignore_eos" not in body  # transformers serve answers 422 to unknown fields
    assert json.loads(body["generation_config"]) == {"max_new_tokens": 128, "min_new_tokens": 128}
    assert cb.ends_at_usage  # it sends no [DONE]
    assert cb.ready_path == "/health"
    assert shlex.split(plain.command)[:4] == ["env", "OMP_NUM_THREADS=1", "transformers", "serve"]
    assert "--continuous-batching" not in plain.command
    assert cb.command.endswith("--continuous-batching --cb-num-blocks 32 --cb-max-batch-tokens 256")


def test_zero_cache_sizes_leave_them_to_the_library() -> None:
    _, cb = transformers_serve_servers(MODEL_DIR, 128, "cpu", "float32", 1, 0, 0)

    assert cb.command.endswith("--continuous-batching")


def test_this_branch_detects_whether_the_service_has_an_engine_flag() -> None:
    from service.settings import Settings

    assert service_engine_flag_supported() == ("engine" in Settings.model_fields)


def test_the_static_cache_server_gets_a_cache_sized_for_the_benchmark() -> None:
    sequential, static = our_servers(
        MODEL_DIR, ["sequential", "sequential-static"], "cuda", "bfloat16", 1, True, static_cache_tokens=1536
    )

    assert shlex.split(static.command)[-5:] == [
        "--engine",
        "sequential",
        "--static-cache",
        "--static-cache-tokens",
        "1536",
    ]
    assert "--static-cache" not in sequential.command


def test_vllm_runs_from_its_venv_with_the_recipes_threads_and_environment(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()

    vllm = vllm_server(tmp_path, Path("/models/smollm2"), "float32", threads=2, max_model_len=2048)

    assert vllm.unavailable_reason is None
    assert vllm.ready_path == "/health"
    assert vllm.ignore_eos
    assert f"LD_PRELOAD={tmp_path}/lib/libiomp5.so" in vllm.command
    assert "VLLM_CPU_OMP_THREADS_BIND=0-1" in vllm.command
    assert "-m vllm.entrypoints.openai.api_server --model /models/smollm2 --dtype float32" in vllm.command


def test_without_its_venv_vllm_is_reported_not_available(tmp_path: Path) -> None:
    vllm = vllm_server(tmp_path / "missing", Path("/models/smollm2"), "float32", 2, 2048)

    assert vllm.unavailable_reason is not None
    assert "scripts/peer_vllm.sh" in vllm.unavailable_reason
