"""A decode step that carries new prompts (LlamaForward.step_carrying) against the step and a
separate packed prefill of the same prompts, in-process.

    python scripts/measure_carry.py                      # SmolLM2-135M, 2 threads
    python scripts/measure_carry.py --rows 4 16 --prompts 1 3

For each number of running rows (100 tokens of context each) and of new chat prompts, the two
ways take turns on the same running batch, so both see the same machine at the same moments;
prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import DynamicCache
from transformers.cache_utils import Cache

from service.engine.llama_forward import LlamaForward
from service.engine.loader import load_model
from service.engine.running_batch import RunningBatch
from service.settings import Settings

CONTEXT = 100


def running_batch(forward: LlamaForward, rows: int) -> RunningBatch:
    batch = RunningBatch(max_rows=rows)
    for row in range(rows):
        ids = [(7 * i + row) % 1000 + 5 for i in range(CONTEXT)]
        cache = DynamicCache()
        _, logits = forward.prefill([ids], cache)
        batch.join([object()], cache, torch.ones(1, CONTEXT, dtype=torch.long), logits.argmax(-1))  # type: ignore[list-item]
    return batch


def step_inputs(batch: RunningBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Cache]:
    """The next decode step's inputs, as the batch loop makes them (the mask one column wider)."""
    batch.attention_mask = F.pad(batch.attention_mask, (0, 1), value=1)
    positions = batch.next_positions.unsqueeze(-1)
    batch.next_positions = batch.next_positions + 1
    assert batch.cache is not None, "a running batch has a cache"
    return batch.next_tokens, batch.attention_mask, positions, batch.cache


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    loaded = load_model(Settings(model=args.model, torch_threads=args.threads))
    forward = LlamaForward.for_model(loaded.model)
    if forward is None:
        raise SystemExit(f"{args.model}: not a model the batch loop's own forward runs")
    prompts = [
        loaded.tokenizer.apply_chat_template(
            [{"role": "user", "content": f"question {n}: tell me about the number {n} and its friends"}],
            return_dict=False,
        )
        for n in range(max(args.prompts))
    ]
    with torch.inference_mode():
        for rows in args.rows:
            for count in args.prompts:
                new = prompts[:count]
                batch = running_batch(forward, rows)
                apart, carried = [], []
                for _ in range(args.rounds + 1):  # the first round warms up
                    started = time.perf_counter()
                    forward(*step_inputs(batch))
                    forward.prefill(new, DynamicCache())
                    apart.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    forward.step_carrying(*step_inputs(batch), new, DynamicCache())
                    carried.append(time.perf_counter() - started)
                separate, together = statistics.median(apart[1:]), statistics.median(carried[1:])
                tokens = sum(len(prompt) for prompt in new)
                print(
                    f"{rows:2d} rows + {count} prompt(s), {tokens} tokens: step and prefill apart "
                    f"{separate * 1e3:6.1f} ms, carried {together * 1e3:6.1f} ms ({together / separate:.2f}x)"
                )


if __name__ == "__main__":
    main()
