"""The batch loop's own forward (service/engine/llama_forward.py) against transformers', in-process.

    python scripts/measure_forward.py                    # SmolLM2-135M, 2 threads, batch 1 and 8
    python scripts/measure_forward.py --rows 1 4 16 --steps 200
    python scripts/measure_forward.py --baseline sdpa   # ours with SDPA in decode steps, not its kernels

For each batch size, two running batches of the same prompts (left-padded, as the batch loop
joins them) take decode steps in turn, one through transformers' forward and one through
ours, so both see the same machine at the same moments and the same context lengths; then
the prefill of one prompt, alternating the same way. Prints the medians and the largest
logit difference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import DynamicCache

from service.engine.batch_loop import transformers_decode_logits
from service.engine.llama_forward import LlamaForward
from service.engine.loader import load_model
from service.engine.running_batch import RunningBatch
from service.settings import Settings

PROMPTS = [
    "Tell me a long story about a dragon.",
    "Hi",
    "What is the capital of France? Answer in detail, please.",
    "2+2?",
]


def joined(model: torch.nn.Module, prompts: list[list[int]]) -> RunningBatch:
    batch = RunningBatch(max_rows=len(prompts))
    for prompt in prompts:
        ids = torch.tensor([prompt])
        cache = DynamicCache()
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
        batch.join([object()], cache, torch.ones_like(ids), logits.argmax(-1))  # type: ignore[list-item]
    return batch


def timed_step(
    batch: RunningBatch, forward: Callable[[RunningBatch], torch.Tensor]
) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    batch.attention_mask = F.pad(batch.attention_mask, (0, 1), value=1)
    logits = forward(batch)
    batch.next_positions = batch.next_positions + 1
    batch.next_tokens = logits.argmax(-1).unsqueeze(-1)
    batch.next_tokens.tolist()  # the batch loop hands the tokens out: the step is done
    return time.perf_counter() - started, logits


def measure(
    model_name: str,
    threads: int,
    rows_levels: list[int],
    steps: int,
    cache_dir: str | None = None,
    baseline: str = "transformers",
) -> dict[str, dict[str, float]]:
    """Per case ('decode N rows', 'prefill N tokens'): median ms of each forward, and for decode the
    largest logit difference between the two. ``baseline``: decode steps through transformers'
    forward, or through ours with SDPA instead of service.engine.decode_kernels ('sdpa');
    prefills are always against transformers'."""
    settings = Settings(
        model=model_name, torch_threads=threads, **({"cache_dir": cache_dir} if cache_dir else {})
    )
    loaded = load_model(settings)
    model, tokenizer = loaded.model, loaded.tokenizer
    ours = LlamaForward.for_model(model)
    if ours is None:
        raise SystemExit(f"{model_name}: not a model LlamaForward takes")
    prompts = [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
        for text in PROMPTS
    ]

    without_kernels = LlamaForward(model, decode_kernels=False)

    def theirs(batch: RunningBatch) -> torch.Tensor:
        if baseline == "sdpa":
            assert batch.cache is not None
            positions = batch.next_positions.unsqueeze(-1)
            return without_kernels(batch.next_tokens, batch.attention_mask, positions, batch.cache)
        return transformers_decode_logits(model, batch)

    def our_step(batch: RunningBatch) -> torch.Tensor:
        assert batch.cache is not None
        return ours(batch.next_tokens, batch.attention_mask, batch.next_positions.unsqueeze(-1), batch.cache)

    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for rows in rows_levels:
            rows_prompts = [prompts[row % len(prompts)] for row in range(rows)]
            their_batch, our_batch = joined(model, rows_prompts), joined(model, rows_prompts)
            times: dict[str, list[float]] = {"transformers": [], "ours": []}
            worst = 0.0
            for _ in range(steps):
                their_s, expected = timed_step(their_batch, theirs)
                our_s, got = timed_step(our_batch, our_step)
                times["transformers"].append(their_s)
                times["ours"].append(our_s)
                worst = max(worst, (expected - got).abs().max().item())
            results[f"decode {rows} rows"] = _medians_ms(times) | {"logit_difference": worst}

        ids = torch.tensor([prompts[0]])
        times = {"transformers": [], "ours": []}
        for _ in range(max(5, steps // 6)):
            started = time.perf_counter()
            model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
            times["transformers"].append(time.perf_counter() - started)
            started = time.perf_counter()
            ours.prefill([prompts[0]], DynamicCache())
            times["ours"].append(time.perf_counter() - started)
        results[f"prefill {ids.shape[1]} tokens"] = _medians_ms(times)
    return results


def _medians_ms(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--baseline", choices=["transformers", "sdpa"], default="transformers")
    args = parser.parse_args()

    print(f"{args.model}, {args.threads} threads, medians of interleaved runs ({args.steps} decode steps)")
    for case, found in measure(
        args.model, args.threads, args.rows, args.steps, baseline=args.baseline
    ).items():
        difference = found.get("logit_difference")
        # The decode baseline is ours without its kernels under --baseline sdpa; prefills are transformers'.
        label = "ours with SDPA" if args.baseline == "sdpa" and case.startswith("decode") else "transformers"
        print(
            f"  {case}: {label} {found['transformers']:.1f} ms, ours {found['ours']:.1f} ms"
            f" ({found['ours'] / found['transformers']:.2f}x)"
            + (f"; largest logit difference {difference:.1e}" if difference is not None else "")
        )


if __name__ == "__main__":
    main()
