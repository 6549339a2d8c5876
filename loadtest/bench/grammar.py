"""``python -m loadtest.bench grammar``: what constrained decoding costs, beside the same free text.

One server (ours, ``--engine``) and one kind of request at two shapes: free text of exactly
``--tokens`` tokens (``ignore_eos``), and a JSON answer of up to that length (``{"story": "..."}``:
the model writes a story and max_tokens usually cuts it, then the grammar closes it, so the
answer is still valid JSON; the table gives the JSON answers' mean length). Each
``--concurrency`` level sends N streams at once, all free, all JSON, or half and half (the
batch's free rows beside constrained ones); rounds interleave the shapes and the table gives
medians of aggregate tokens/s, each shape's ratio to free text, and the JSON answers' validity.

    python -m loadtest.bench grammar --model smollm2-135m --tokens 128 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from loadtest.driver.spawn import spawn_server

_SCHEMA = {
    "type": "object",
    "properties": {"story": {"type": "string"}},
    "required": ["story"],
}
_PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to code, as JSON."}]
SHAPES = ("free", "json", "half")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench grammar", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--engine", default="batched")
    parser.add_argument("--threads", type=int, default=2, help="--torch-threads for the server")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated stream counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/grammar-bench"))
    return parser.parse_args(argv)


async def _one(http: httpx.AsyncClient, tokens: int, constrained: bool, seed: int) -> tuple[int, bool]:
    body: dict[str, Any] = {"messages": _PROMPT, "max_tokens": tokens, "temperature": 0.8, "seed": seed}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "story", "schema": _SCHEMA}}
    else:
        body["ignore_eos"] = True
    response = await http.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    answer = response.json()
    text = answer["choices"][0]["message"]["content"]
    valid = True
    if constrained:
        try:
            valid = isinstance(json.loads(text)["story"], str)
        except (ValueError, KeyError, TypeError):
            valid = False
    return int(answer["usage"]["completion_tokens"]), valid


async def _level(url: str, streams: int, shape: str, tokens: int, seed: int) -> tuple[float, list[int], int]:
    """Aggregate tokens/s of ``streams`` requests at once, the JSON answers' lengths, how many were valid."""
    constrained = [shape == "json" or (shape == "half" and row % 2 == 1) for row in range(streams)]
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_one(http, tokens, is_json, seed + row) for row, is_json in enumerate(constrained))
        )
        elapsed = time.perf_counter() - started
    generated = sum(count for count, _ in results)
    json_answers = [result for result, is_json in zip(results, constrained, strict=True) if is_json]
    return generated / elapsed, [count for count, _ in json_answers], sum(ok for _, ok in json_answers)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    levels = [int(part) for part in args.concurrency.split(",")]
    command = (
        f"python -m service --model {args.model} --engine {args.engine} --torch-threads {args.threads} "
        f"--max-concurrency {max(levels)}"
    )
    rates: dict[tuple[int, str], list[float]] = {}
    lengths: list[int] = []
    valid = 0
    with spawn_server(command, args.out / "server.log") as server:
        for round_number in range(args.rounds):
            for streams in levels:
                for shape in SHAPES if streams > 1 else SHAPES[:2]:
                    seed = round_number * 100
                    rate, json_lengths, ok = asyncio.run(
                        _level(server.url, streams, shape, args.tokens, seed)
                    )
                    rates.setdefault((streams, shape), []).append(rate)
                    lengths, valid = lengths + json_lengths, valid + ok
                    print(
                        f"round {round_number + 1} c{streams} {shape}: {rate:.1f} tokens/s", file=sys.stderr
                    )
    lines = [
        f"Constrained decoding, {args.model}, engine {args.engine}, {args.threads} threads, "
        f"{args.tokens} tokens a request, medians of {args.rounds} interleaved rounds "
        f"(`python -m loadtest.bench grammar {' '.join(argv)}`).",
        "",
        "| streams | free text tok/s | JSON tok/s | JSON / free | half JSON tok/s | half / free |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for streams in levels:
        free = statistics.median(rates[(streams, "free")])
        constrained = statistics.median(rates[(streams, "json")])
        half = rates.get((streams, "half"))
        half_cells = (
            f"{statistics.median(half):.1f} | {statistics.median(half) / free:.2f}" if half else "- | -"
        )
        lines.append(
            f"| {streams} | {free:.1f} | {constrained:.1f} | {constrained / free:.2f} | {half_cells} |"
        )
    mean_length = statistics.mean(lengths) if lengths else 0
    lines += [
        "",
        f"JSON answers that parsed and matched the schema: {valid} of {len(lengths)}; their mean length "
        f"{mean_length:.1f} tokens (free text: {args.tokens}).",
    ]
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grammar-bench.md").write_text(report + "\n")
    return 0 if valid == len(lengths) else 1
