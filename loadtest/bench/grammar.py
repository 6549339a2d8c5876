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
from dataclasses import dataclass
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


async def _one(http: httpx.AsyncClient, tokens: int, constrained: bool, seed: int) -> tuple[int, float, bool]:
    """One streamed request: its completion tokens, its time per output token after the first, and
    (for JSON) whether the answer parsed."""
    body: dict[str, Any] = {
        "messages": _PROMPT,
        "max_tokens": tokens,
        "temperature": 0.8,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "story", "schema": _SCHEMA}}
    else:
        body["ignore_eos"] = True
    text, first_at, last_at, generated = "", 0.0, 0.0, 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                generated = int(chunk["usage"]["completion_tokens"])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last_at = time.perf_counter()
                first_at = first_at or last_at
                text += chunk["choices"][0]["delta"]["content"]
    valid = True
    if constrained:
        try:
            valid = isinstance(json.loads(text)["story"], str)
        except (ValueError, KeyError, TypeError):
            valid = False
    return generated, (last_at - first_at) / max(1, generated - 1), valid


@dataclass
class LevelResult:
    tokens_per_s: float  # aggregate
    tpot_s: dict[bool, list[float]]  # per request, by constrained
    json_lengths: list[int]
    json_valid: int


async def _level(url: str, streams: int, shape: str, tokens: int, seed: int) -> LevelResult:
    """``streams`` requests at once, all free text, all JSON, or half and half."""
    constrained = [shape == "json" or (shape == "half" and row % 2 == 1) for row in range(streams)]
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_one(http, tokens, is_json, seed + row) for row, is_json in enumerate(constrained))
        )
        elapsed = time.perf_counter() - started
    tpot: dict[bool, list[float]] = {True: [], False: []}
    for (_, per_token, _), is_json in zip(results, constrained, strict=True):
        tpot[is_json].append(per_token)
    json_answers = [result for result, is_json in zip(results, constrained, strict=True) if is_json]
    return LevelResult(
        sum(count for count, _, _ in results) / elapsed,
        tpot,
        [count for count, _, _ in json_answers],
        sum(ok for _, _, ok in json_answers),
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    levels = [int(part) for part in args.concurrency.split(",")]
    command = (
        f"python -m service --model {args.model} --engine {args.engine} --torch-threads {args.threads} "
        f"--max-concurrency {max(levels)}"
    )
    results: dict[tuple[int, str], list[LevelResult]] = {}
    with spawn_server(command, args.out / "server.log") as server:
        for round_number in range(args.rounds):
            for streams in levels:
                for shape in SHAPES if streams > 1 else SHAPES[:2]:
                    result = asyncio.run(_level(server.url, streams, shape, args.tokens, round_number * 100))
                    results.setdefault((streams, shape), []).append(result)
                    print(
                        f"round {round_number + 1} c{streams} {shape}: {result.tokens_per_s:.1f} tokens/s",
                        file=sys.stderr,
                    )
    report = _report(args, argv, levels, results)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grammar-bench.md").write_text(report + "\n")
    answers = [result for runs in results.values() for result in runs]
    return 0 if all(result.json_valid == len(result.json_lengths) for result in answers) else 1


def _report(
    args: argparse.Namespace,
    argv: list[str],
    levels: list[int],
    results: dict[tuple[int, str], list[LevelResult]],
) -> str:
    def rate(streams: int, shape: str) -> float:
        return statistics.median(result.tokens_per_s for result in results[(streams, shape)])

    def tpot_ms(streams: int, shape: str, constrained: bool) -> float:
        return 1000 * statistics.median(
            t for result in results[(streams, shape)] for t in result.tpot_s[constrained]
        )

    lines = [
        f"Constrained decoding, {args.model}, engine {args.engine}, {args.threads} threads, "
        f"up to {args.tokens} tokens a request, temperature 0.8, medians of {args.rounds} interleaved rounds "
        f"(`python -m loadtest.bench grammar {' '.join(argv)}`).",
        "",
        "TPOT: time per output token after the first, per request (the decode step's cost, whatever "
        "the answer's length); tokens/s: aggregate over the level.",
        "",
        "| streams | free TPOT ms | JSON TPOT ms | JSON / free | mixed: free TPOT | mixed: JSON TPOT "
        "| free tok/s | JSON tok/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for streams in levels:
        free, constrained = tpot_ms(streams, "free", False), tpot_ms(streams, "json", True)
        mixed = (
            f"{tpot_ms(streams, 'half', False):.1f} | {tpot_ms(streams, 'half', True):.1f}"
            if (streams, "half") in results
            else "- | -"
        )
        lines.append(
            f"| {streams} | {free:.1f} | {constrained:.1f} | {constrained / free:.2f} | {mixed} "
            f"| {rate(streams, 'free'):.1f} | {rate(streams, 'json'):.1f} |"
        )
    lengths = [n for runs in results.values() for result in runs for n in result.json_lengths]
    valid = sum(result.json_valid for runs in results.values() for result in runs)
    lines += [
        "",
        f"JSON answers that parsed and matched the schema: {valid} of {len(lengths)}; their mean length "
        f"{statistics.mean(lengths):.1f} tokens (free text: {args.tokens}, ignore_eos).",
    ]
    return "\n".join(lines)
