"""What hostile clients cost everyone else, against a running server.

``python scripts/measure_hostile.py http://127.0.0.1:8000`` (a server of tiny-random or any
model) measures, one after the other:

- refusals: ``--prompts`` prompts of ``--prompt-mb`` MB sent at once, each refused (400,
  far over any context) while one stream runs: how long until all were refused, and that
  stream's longest gap between two text events;
- endless headers: two clients each send a header that never ends (64 KiB at a time,
  reconnecting when cut off) while ``/health`` is probed ``--probes`` times: its median
  and longest latency.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import httpx


def longest_gap_of_a_stream(url: str, tokens: int, result: dict[str, float]) -> None:
    body = {"messages": "hello", "max_new_tokens": tokens, "ignore_eos": True}
    last, gaps = None, []
    with httpx.Client(timeout=300) as http, http.stream("POST", f"{url}/v1/chat", json=body) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                now = time.perf_counter()
                if last is not None:
                    gaps.append(now - last)
                last = now
    result["longest_gap_s"] = max(gaps, default=0.0)


def refusals(url: str, prompts: int, prompt_mb: float, stream_tokens: int) -> str:
    result: dict[str, float] = {}
    stream = threading.Thread(target=longest_gap_of_a_stream, args=(url, stream_tokens, result))
    stream.start()
    time.sleep(0.5)  # the stream is running
    sentence = "The quick brown fox jumps. "
    body = json.dumps(
        {"messages": [{"role": "user", "content": sentence * int(prompt_mb * 1e6 / len(sentence))}]}
    )
    statuses: list[int] = []

    def post() -> None:
        headers = {"Content-Type": "application/json"}
        statuses.append(httpx.post(f"{url}/v1/chat", content=body, headers=headers, timeout=300).status_code)

    started = time.perf_counter()
    senders = [threading.Thread(target=post) for _ in range(prompts)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    refused_s = time.perf_counter() - started
    stream.join()
    return (
        f"{prompts} prompts of {len(body) / 1e6:.2f} MB: statuses {sorted(set(statuses))}, all answered in "
        f"{refused_s:.2f} s; a running stream's longest gap meanwhile {result['longest_gap_s']:.3f} s"
    )


def endless_headers(url: str, probes: int) -> str:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    stop = threading.Event()

    def send_forever() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(address, timeout=5) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
                    while not stop.is_set():
                        sock.sendall(b"a" * 65536)
            except OSError:
                pass  # cut off: start again

    clients = [threading.Thread(target=send_forever) for _ in range(2)]
    for client in clients:
        client.start()
    latencies = []
    try:
        with httpx.Client(timeout=60) as http:
            for _ in range(probes):
                started = time.perf_counter()
                http.get(f"{url}/health")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.1)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    return (
        f"/health beside 2 endless-header clients: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"longest {max(latencies) * 1000:.1f} ms over {len(latencies)} probes"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--prompt-mb", type=float, default=1.0)
    parser.add_argument("--stream-tokens", type=int, default=1500)
    parser.add_argument("--probes", type=int, default=10)
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    print(refusals(url, args.prompts, args.prompt_mb, args.stream_tokens))
    print(endless_headers(url, args.probes))


if __name__ == "__main__":
    main()
