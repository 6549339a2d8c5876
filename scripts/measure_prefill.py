"""What grouping and chunking the prefill change for streams that share a batch with a long prompt.

``python scripts/measure_prefill.py`` runs the batch loop in-process on bench-10m, in two
scenarios, each with the loop as it is and as it was (one padded pass for every prompt
that arrived together, no chunks), interleaved over ``--rounds``:

- stall: 4 streams are decoding when a long prompt arrives; the longest gap between two
  tokens of those streams (it was the whole prefill of the long prompt);
- burst: 7 short prompts and 1 long one arrive together; the short ones' median time to
  first token (they were padded to the long one).

Medians over the rounds; ratios are new / old.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Stream:
    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.done = threading.Event()

    def __call__(
        self, token_ids: list[int], finished: bool, error: BaseException | None, logprobs: object = None
    ) -> None:
        self.arrivals.append(time.perf_counter())
        if finished or error is not None:
            self.done.set()


def measure(
    model: str, long_tokens: int, rounds: int, chunk_tokens: int = 512, cache_dir: Path | None = None
) -> dict[str, float]:
    import torch

    from loadtest.bench.lib.model import resolve_bench_model
    from service.engine import prefill as prefill_module
    from service.engine.batch_loop import BatchLoop
    from service.engine.batch_request import BatchRequest
    from service.engine.loader import load_model
    from service.settings import Settings

    model_dir = resolve_bench_model(model, cache_dir or Settings().cache_dir, "cpu", "float32")
    loaded = load_model(Settings(model=str(model_dir), device="cpu", dtype="float32", torch_threads=1))
    vocab = loaded.model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    long_prompt = torch.randint(10, vocab, (long_tokens,), generator=generator).tolist()
    short_prompt = long_prompt[:24]

    def run(loop: BatchLoop, prompts: list[list[int]], tokens: int, delay_s: float = 0.0) -> list[Stream]:
        streams = []
        for prompt in prompts:
            stream = Stream()
            loop.submit(BatchRequest(prompt, tokens, 0.0, 1.0, 0, True, stream))
            streams.append(stream)
            time.sleep(delay_s)
        return streams

    def stall(loop: BatchLoop) -> float:
        running = run(loop, [short_prompt] * 4, 120)
        time.sleep(0.3)  # decoding
        late = run(loop, [long_prompt], 4)
        for stream in running + late:
            stream.done.wait(120)
        return max(max(b - a for a, b in zip(s.arrivals, s.arrivals[1:], strict=False)) for s in running)

    def burst(loop: BatchLoop) -> float:
        started = time.perf_counter()
        streams = run(loop, [short_prompt] * 7 + [long_prompt], 4)
        for stream in streams:
            stream.done.wait(120)
        return statistics.median(stream.arrivals[0] - started for stream in streams[:7])

    eos = loaded.tokenizer.eos_token_id
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for version in ("old", "new"):
            chunk = chunk_tokens if version == "new" else 1_000_000
            pass_tokens = Settings().prefill_pass_tokens if version == "new" else chunk
            # as it was: every prompt that arrived together in one padded pass
            as_it_was = mock.patch.object(
                prefill_module, "length_groups", lambda requests: [requests] if requests else []
            )
            with as_it_was if version == "old" else contextlib.nullcontext():
                loop = BatchLoop(
                    loaded.model, 8, 0, [eos], prefill_chunk_tokens=chunk, prefill_pass_tokens=pass_tokens
                )
                try:
                    for scenario, fn in (("stall", stall), ("burst", burst)):
                        results.setdefault(f"{scenario} {version}", []).append(fn(loop))
                finally:
                    loop.stop()
    return {name: statistics.median(values) for name, values in results.items()}


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", default="bench-10m")
    parser.add_argument("--long-tokens", type=int, default=1800)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-tokens", type=int, default=512, help="the new loop's --prefill-chunk-tokens")
    args = parser.parse_args(argv)
    ms = {
        name: value * 1000
        for name, value in measure(args.model, args.long_tokens, args.rounds, args.chunk_tokens).items()
    }
    print(
        f"{args.model}, a {args.long_tokens}-token prompt, chunks of {args.chunk_tokens}, "
        f"medians of {args.rounds} rounds (ms)"
    )
    print(f"longest gap of a running stream: old {ms['stall old']:.1f}  new {ms['stall new']:.1f}")
    print(f"short prompts' TTFT beside it:   old {ms['burst old']:.1f}  new {ms['burst new']:.1f}")


if __name__ == "__main__":
    main()
