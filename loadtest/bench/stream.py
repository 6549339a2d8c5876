"""Single-stream benchmark: raw generate() vs our streamer vs the stock one vs the served stream.

Prints one table, each row a ratio to raw ``model.generate`` at the same thread
count, so the cost of streaming and of HTTP is visible side by side:

    python -m loadtest.bench stream --model tiny-random --tokens 512 --threads 1,2

The served rows start ``python -m service`` in a subprocess (one per thread
count) on 127.0.0.1 and stream from /v1/chat with httpx.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx


def measure_interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call; calls alternate so that machine noise hits every variant alike."""
    for fn in fns.values():
        fn()  # warm-up
    durations: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            durations[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in durations.items()}


def in_process(model_id: str, threads: int, tokens: int, repeats: int) -> dict[str, float]:
    import torch
    from transformers import TextIteratorStreamer

    from service.engine.loader import load_model
    from service.engine.streamer import Detokenizer, TokenIdStreamer
    from service.settings import Settings

    loaded = load_model(Settings(model=model_id, torch_threads=threads))
    model, tokenizer = loaded.model, loaded.tokenizer
    messages = [{"role": "user", "content": "How do I reverse a list in Python?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    input_ids = torch.tensor([ids], device=loaded.device)
    kwargs = {
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.eos_token_id,
    }

    def raw() -> None:
        with torch.inference_mode():
            model.generate(input_ids, **kwargs)

    def ours() -> None:
        # As the engines do: ids handed to another thread (there, the event loop), decoded there.
        handed: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        detokenizer = Detokenizer(tokenizer.backend_tokenizer, ())
        reader = threading.Thread(target=lambda: [detokenizer.feed(ids) for ids in iter(handed.get, None)])
        reader.start()
        with torch.inference_mode():
            model.generate(input_ids, streamer=TokenIdStreamer(handed.put), **kwargs)
        handed.put(None)
        reader.join()

    def stock() -> None:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        reader = threading.Thread(target=lambda: [None for _ in streamer])
        reader.start()
        with torch.inference_mode():
            model.generate(input_ids, streamer=streamer, **kwargs)
        reader.join()

    seconds = measure_interleaved({"raw": raw, "ours": ours, "stock": stock}, repeats)
    return {name: tokens / value for name, value in seconds.items()}


def served(model_id: str, threads: int, tokens: int, repeats: int) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "service", "--model", model_id, "--port", str(port)]
    command += ["--torch-threads", str(threads), "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url)
        payload = {"messages": "How do I reverse a list in Python?", "max_new_tokens": tokens}
        payload |= {"ignore_eos": True, "temperature": 0}
        results = []
        with httpx.Client(base_url=url, timeout=600) as http:
            for _ in range(repeats + 1):
                results.append(_stream_once(http, payload))
        results = results[1:]  # the first is a warm-up
        return {
            "served": tokens / statistics.median(r[1] for r in results),
            "served_ttft_s": statistics.median(r[0] for r in results),
        }
    finally:
        process.terminate()
        process.wait(30)


def _stream_once(http: httpx.Client, payload: dict[str, object]) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    with http.stream("POST", "/v1/chat", json=payload) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and first is None:
                first = time.perf_counter() - started
            if line.startswith("data: ") and '"usage"' in line:
                assert json.loads(line[6:])["usage"]["completion_tokens"] == payload["max_new_tokens"]
    return first or 0.0, time.perf_counter() - started


def _wait_ready(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    print(f"model={args.model} tokens={args.tokens} repeats={args.repeats} cpus={os.cpu_count()}")
    header = f"{'threads':>7} {'raw tok/s':>10} {'ours':>12} {'stock':>12} {'served':>12} {'ttft':>8}"
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        # Each thread count in a fresh process: torch's thread pool is set once per process.
        code = (
            "import json,sys; sys.path.insert(0, '.');"
            "from loadtest.bench.stream import in_process;"
            f"print(json.dumps(in_process({args.model!r}, {threads}, {args.tokens}, {args.repeats})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result |= served(args.model, threads, args.tokens, args.repeats)
        raw = result["raw"]
        rows.append(
            f"{threads:>7} {raw:>10.0f} "
            f"{result['ours']:>6.0f} {result['ours'] / raw:>4.2f}x "
            f"{result['stock']:>6.0f} {result['stock'] / raw:>4.2f}x "
            f"{result['served']:>6.0f} {result['served'] / raw:>4.2f}x "
            f"{result['served_ttft_s'] * 1000:>6.1f}ms"
        )
    print(header)
    print("\n".join(rows))
    print("ours/stock: generate() with our TokenIdStreamer + Detokenizer / with TextIteratorStreamer;")
    print("served: /v1/chat over HTTP from another process; ratios are to raw generate at the same threads.")


if __name__ == "__main__":
    main()
