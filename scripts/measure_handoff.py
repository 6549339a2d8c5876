"""What handing each token to an event loop costs ``generate()``, without HTTP.

``python scripts/measure_handoff.py`` runs, interleaved, on one model in one process:

- raw: ``model.generate()`` alone;
- streamer: with our TokenIdStreamer, whose ids go nowhere (the streamer's own cost);
- handoff: with the TokenIdStreamer handing every step's ids to an asyncio loop on another
  thread through ``call_soon_threadsafe``, as the sequential engine does (the loop wakes
  once per token and runs Python while ``generate()`` wants the GIL back).

It prints tokens/s and each one's ratio to raw (medians over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(
    model: str, tokens: int, rounds: int, threads: int, cache_dir: Path | None = None
) -> dict[str, float]:
    """Median tokens/s of each variant over ``rounds`` interleaved rounds."""
    import torch

    from loadtest.bench.lib.model import resolve_bench_model
    from service.engine.loader import load_model
    from service.engine.streamer import TokenIdStreamer
    from service.settings import Settings

    model_dir = resolve_bench_model(model, cache_dir or Settings().cache_dir, "cpu", "float32")
    loaded = load_model(Settings(model=str(model_dir), device="cpu", dtype="float32", torch_threads=threads))
    messages = [{"role": "user", "content": "Tell me a story"}]
    ids = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    input_ids = torch.tensor([ids])
    kwargs = {
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": loaded.tokenizer.eos_token_id,
    }
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    received: asyncio.Queue[list[int]] = asyncio.Queue()

    def hand_off(token_ids: list[int]) -> None:
        loop.call_soon_threadsafe(received.put_nowait, token_ids)

    variants: dict[str, Callable[[], Any]] = {
        "raw": lambda: None,
        "streamer": lambda: TokenIdStreamer(lambda _: None),
        "handoff": lambda: TokenIdStreamer(hand_off),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        loaded.model.generate(input_ids, **kwargs)  # warm-up
        for _ in range(rounds):
            for name, make_streamer in variants.items():
                started = time.perf_counter()
                loaded.model.generate(input_ids, streamer=make_streamer(), **kwargs)
                rates[name].append(tokens / (time.perf_counter() - started))
    loop.call_soon_threadsafe(loop.stop)
    return {name: statistics.median(values) for name, values in rates.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bench-10m", help="bench-10m, tiny-random or a model directory")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    rates = measure(args.model, args.tokens, args.rounds, args.threads)
    print(
        f"{args.model}, {args.tokens} tokens, {args.threads} torch thread(s), medians of {args.rounds} rounds"
    )
    for name, rate in rates.items():
        print(f"{name:10s} {rate:7.1f} tok/s  {rate / rates['raw']:.3f}x raw")


if __name__ == "__main__":
    main()
