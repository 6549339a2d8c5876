"""Continuous batching on CPU: the library's auto-sized paged cache vs one sized for the work.

    python scripts/measure_cb_cache.py auto    # ContinuousBatchingConfig() defaults
    python scripts/measure_cb_cache.py sized   # what BatchedEngine uses on CPU
    python scripts/measure_cb_cache.py sized /path/to/model   # another model (default tiny-random)

Prints aggregate tokens/s of 8 concurrent greedy requests of 128 tokens, the first
request's time to first token, and the peak RSS. Run each in its own process.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

from service.engine.loader import load_model
from service.settings import Settings

REQUESTS, TOKENS = 8, 128


async def run(manager: object, prompt: list[int]) -> tuple[float, float]:
    async def one(index: int) -> float:
        outputs: asyncio.Queue[object] = asyncio.Queue()
        manager.register_result_handler(f"r{index}", outputs.put_nowait)  # type: ignore[attr-defined]
        manager.add_request(
            prompt, request_id=f"r{index}", max_new_tokens=TOKENS, streaming=True, eos_token_id=-1
        )  # type: ignore[attr-defined]
        started, first = time.perf_counter(), None
        while True:
            output = await outputs.get()
            first = first if first is not None else time.perf_counter() - started
            if output.is_finished():  # type: ignore[attr-defined]
                return first

    started = time.perf_counter()
    firsts = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    return REQUESTS * TOKENS / (time.perf_counter() - started), firsts[0]


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "sized"
    model = sys.argv[2] if len(sys.argv) > 2 else "tiny-random"
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    loaded = load_model(Settings(model=model, torch_threads=threads))
    tokenizer = loaded.tokenizer
    config = (
        ContinuousBatchingConfig()
        if mode == "auto"
        else ContinuousBatchingConfig(page_size=64, num_blocks=256, max_batch_tokens=256)
    )
    manager = loaded.model.init_continuous_batching(
        generation_config=GenerationConfig(do_sample=False, eos_token_id=tokenizer.eos_token_id),
        continuous_batching_config=config,
    )
    manager.start()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], return_dict=False)
    try:
        tokens_per_s, first_s = asyncio.run(run(manager, prompt))
    finally:
        manager.stop(block=True, timeout=10)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{mode}: {tokens_per_s:.0f} tokens/s, first token {first_s:.3f} s, peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
