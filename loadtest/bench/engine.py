"""``python -m loadtest.bench engine``: raw generate, our engines and ``transformers serve``, in one run.

On one model (the built-in real model smollm2-135m by default; bench-10m, ~10M
random-weight parameters, is the overhead-bound case) and with one HTTP client
(loadtest/clients, OpenAI-compatible) for every server, it measures raw in-process
``model.generate`` tokens/s and prefill; each server's single stream (tokens/s, TTFT)
as a ratio to raw; aggregate tokens/s and p50/p99 TTFT at each concurrency level; it
prints one table with the issue's targets marked met/missed and writes OUT/engine-bench-<device>.json and .md.

    python -m loadtest.bench engine                                 # CPU: 128 tokens, a few minutes
    python -m loadtest.bench engine --tokens 512 --device cuda      # GPU
    python -m loadtest.bench engine --engines sequential --no-transformers-serve --tokens 16

Each server is started, measured and stopped in turn. Every request generates exactly
``--tokens`` tokens (ignore_eos; transformers serve: a generation_config with
min_new_tokens), greedily. Numbers on a shared machine are noisy: single streams are
interleaved with raw generate and reported as medians; the ratios move less than the
absolute numbers.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from loadtest.bench.lib.bandwidth import decode_weights, memory_bound
from loadtest.bench.lib.measure import BenchPlan, measure_server
from loadtest.bench.lib.model import resolve_bench_model
from loadtest.bench.lib.raw import load_raw_generator
from loadtest.bench.lib.servers import (
    DEFAULT_ENGINES,
    OUR_ENGINES,
    PEERS,
    TRANSFORMERS_SERVE,
    TRANSFORMERS_SERVE_CB,
    VLLM,
    our_servers,
    service_engine_flag_supported,
    transformers_serve_servers,
    vllm_server,
)
from loadtest.bench.lib.summary import evaluate_targets, merge_repeats
from loadtest.bench.lib.tables import machine_info, render_text, write_outputs
from loadtest.traffic.prompts import DEFAULT_PROMPTS_FILE, load_prompts

logger = logging.getLogger("bench_engine")


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="'smollm2-135m' (real weights), 'bench-10m' (random weights, overhead-bound), 'tiny-random', "
        "'random:<config>' (e.g. random:mistral-7b) or a model directory",
    )
    parser.add_argument("--tokens", type=int, default=128, help="tokens per request, exact (512 on a GPU)")
    parser.add_argument("--concurrency", type=_int_list, default=[1, 4, 8, 16], help="levels, e.g. 1,4,8,16")
    parser.add_argument("--requests-per-level", type=int, default=0, help="0: twice the level, at least 4")
    parser.add_argument("--single-repeats", type=int, default=7, help="single streams interleaved with raw")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="whole rounds over every server, interleaved (server A, B, ..., A, B, ...); medians reported",
    )
    parser.add_argument(
        "--engines",
        default=",".join(DEFAULT_ENGINES),
        help=f"our servers to run, of {', '.join(OUR_ENGINES)}",
    )
    parser.add_argument(
        "--no-transformers-serve", action="store_true", help="skip transformers serve (with and without CB)"
    )
    parser.add_argument(
        "--peers",
        default=f"{TRANSFORMERS_SERVE},{TRANSFORMERS_SERVE_CB}",
        help=f"peers to run, of {', '.join(PEERS)} (vllm: from --vllm-venv, scripts/peer_vllm.sh)",
    )
    parser.add_argument(
        "--vllm-venv", type=Path, default=Path(".peers/vllm"), help="vLLM's CPU build (scripts/peer_vllm.sh)"
    )
    parser.add_argument("--vllm-max-model-len", type=int, default=2048, help="vLLM's --max-model-len")
    parser.add_argument("--cb-num-blocks", type=int, default=32, help="transformers serve CB cache (0: auto)")
    parser.add_argument(
        "--cb-max-batch-tokens", type=int, default=256, help="transformers serve CB (0: auto)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the same for every server)")
    parser.add_argument("--dtype", default="auto", help="auto: float32 on CPU, bfloat16 on CUDA")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads everywhere; 0: all cores but one"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "llm-serving")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS_FILE)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--stem", default=None, help="output file names (default engine-bench-<device>)")
    args = parser.parse_args(argv)
    args.engines = [engine for engine in args.engines.split(",") if engine]
    args.peers = [peer for peer in args.peers.split(",") if peer]
    if unknown_peers := set(args.peers) - set(PEERS):
        parser.error(f"--peers: unknown {sorted(unknown_peers)}")
    unknown = set(args.engines) - set(OUR_ENGINES)
    if unknown:
        parser.error(f"--engines: unknown {sorted(unknown)}; known: {', '.join(OUR_ENGINES)}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the results it also writes."""
    from service.engine.loader import resolve_device, resolve_dtype

    threads = args.threads or max(1, len(os.sched_getaffinity(0)) - 1)
    dtype = str(resolve_dtype(args.dtype, resolve_device(args.device))).removeprefix("torch.")
    model_dir = resolve_bench_model(args.model, args.cache_dir, args.device, dtype)
    prompts = load_prompts(args.prompts)
    plan = BenchPlan(args.tokens, args.concurrency, args.requests_per_level, args.single_repeats)
    raw = load_raw_generator(model_dir, args.tokens, args.device, dtype, threads)
    parameters = decode_weights(raw.model)[0]

    engine_flag = service_engine_flag_supported()
    # A static cache sized for the benchmark's requests (prompt + --tokens), not the whole context.
    static_cache_tokens = args.tokens + 1024
    servers = our_servers(
        model_dir, args.engines, args.device, dtype, threads, engine_flag, static_cache_tokens
    )
    if not args.no_transformers_serve:
        servers += [
            server
            for server in transformers_serve_servers(
                model_dir,
                args.tokens,
                args.device,
                dtype,
                threads,
                args.cb_num_blocks,
                args.cb_max_batch_tokens,
            )
            if server.name in args.peers
        ]
    if VLLM in args.peers:
        servers.append(vllm_server(args.vllm_venv, model_dir, dtype, threads, args.vllm_max_model_len))
    stem = args.stem or f"engine-bench-{args.device.split(':')[0]}"
    runs_by_server: dict[str, list[dict[str, Any]]] = {server.name: [] for server in servers}
    for repeat in range(args.repeats):
        for server in servers:
            logger.info("measuring %s (round %d of %d)", server.name, repeat + 1, args.repeats)
            runs_by_server[server.name].append(
                measure_server(server, raw, prompts, plan, args.out / f"{stem}-logs")
            )
    results_by_server = {name: merge_repeats(runs) for name, runs in runs_by_server.items()}
    raw_runs = [s["single_stream"] for s in results_by_server.values() if s.get("available")]
    pooled_raw = _pooled_raw(raw_runs)
    results = {
        "config": {
            "model": args.model,
            "model_dir": str(model_dir),
            "parameters": parameters,
            "tokens": args.tokens,
            "concurrency_levels": args.concurrency,
            "requests_per_level": {str(c): plan.requests_for(c) for c in args.concurrency},
            "single_repeats": args.single_repeats,
            "repeats": args.repeats,
            "device": args.device,
            "dtype": dtype,
            "threads": threads,
            "engines": args.engines,
            "service_engine_flag": engine_flag,
            "transformers_serve_cb": {
                "num_blocks": args.cb_num_blocks,
                "max_batch_tokens": args.cb_max_batch_tokens,
            },
            "command_line": shlex.join(["python", "-m", "loadtest.bench", "engine", *sys.argv[1:]]),
        },
        "machine": machine_info(),
        "raw": pooled_raw,
        "memory_bound": memory_bound(raw.model, raw.device, pooled_raw["tokens_per_s"]),
        "servers": results_by_server,
    }
    results["targets"] = [
        t.to_dict() for t in evaluate_targets(results_by_server, args.concurrency, results["memory_bound"])
    ]
    write_outputs(results, args.out, stem)
    return results


def _pooled_raw(single_streams: list[dict[str, Any]]) -> dict[str, float | None]:
    """The headline raw numbers: the median of every server's interleaved raw medians."""
    tokens_per_s = [s["raw_tokens_per_s"] for s in single_streams if s["raw_tokens_per_s"] is not None]
    prefills_s = [s["raw_prefill_s"] for s in single_streams if s["raw_prefill_s"] is not None]
    return {
        "tokens_per_s": statistics.median(tokens_per_s) if tokens_per_s else None,
        "prefill_s": statistics.median(prefills_s) if prefills_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the progress
    args = parse_args(argv)
    results = run(args)
    print(render_text(results))
    print(f"\nwrote {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
