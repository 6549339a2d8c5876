"""llguidance against xgrammar on a model's tokenizer: compile time and mask time per token.

Why service/engine/grammar.py uses llguidance (docs/structured-output.md). xgrammar is not in
the project's lock (it pulls triton); install both beside it, without their dependencies:

    .venv/bin/pip install --no-deps --target /tmp/grammar-libs llguidance xgrammar apache-tvm-ffi
    .venv/bin/python scripts/compare_grammar_libraries.py --libs /tmp/grammar-libs \
        --tokenizer ~/.cache/llm-serving/smollm2-135m-v1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SMALL = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
LARGE = {
    "type": "object",
    "properties": {
        f"field_{i}": (
            {"type": "string", "maxLength": 20}
            if i % 3 == 0
            else {"type": "integer"}
            if i % 3 == 1
            else {"type": "array", "items": {"type": "number"}}
        )
        for i in range(60)
    },
    "required": [f"field_{i}" for i in range(0, 60, 2)],
}
ANSWER = json.dumps({"city": "Paris", "population": 2102650})


def measure_llguidance(tokenizer: Any) -> dict[str, float]:
    import llguidance
    import llguidance.hf
    import torch

    started = time.perf_counter()
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
    results = {"tokenizer tables s": time.perf_counter() - started}
    for name, schema in (("compile 2 fields ms", SMALL), ("compile 60 fields ms", LARGE)):
        started = time.perf_counter()
        llguidance.LLMatcher(ll_tokenizer, llguidance.LLMatcher.grammar_from_json_schema(schema))
        results[name] = (time.perf_counter() - started) * 1000
    matcher = llguidance.LLMatcher(ll_tokenizer, llguidance.LLMatcher.grammar_from_json_schema(SMALL))
    mask = torch.zeros((len(tokenizer) + 31) // 32, dtype=torch.int32)

    def step(token: int) -> None:
        matcher.unsafe_compute_mask_ptr(mask.data_ptr(), mask.numel() * 4)
        matcher.consume_token(token)

    return results | _mask_times(tokenizer, step)


def measure_xgrammar(tokenizer: Any) -> dict[str, float]:
    import xgrammar

    started = time.perf_counter()
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    compiler = xgrammar.GrammarCompiler(info)
    results = {"tokenizer tables s": time.perf_counter() - started}
    for name, schema in (("compile 2 fields ms", SMALL), ("compile 60 fields ms", LARGE)):
        started = time.perf_counter()
        compiler.compile_json_schema(json.dumps(schema))
        results[name] = (time.perf_counter() - started) * 1000
    matcher = xgrammar.GrammarMatcher(compiler.compile_json_schema(json.dumps(SMALL)))
    mask = xgrammar.allocate_token_bitmask(1, info.vocab_size)

    def step(token: int) -> None:
        matcher.fill_next_token_bitmask(mask)
        matcher.accept_token(token)

    return results | _mask_times(tokenizer, step)


def _mask_times(tokenizer: Any, step: Callable[[int], None]) -> dict[str, float]:
    """A token's mask then the token, for each token of a valid answer."""
    times = []
    for token in tokenizer.encode(ANSWER, add_special_tokens=False):
        started = time.perf_counter()
        step(token)
        times.append(time.perf_counter() - started)
    return {"mask+advance us median": statistics.median(times) * 1e6, "mask+advance us max": max(times) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--libs", help="a directory with the libraries (pip --target)")
    parser.add_argument("--tokenizer", required=True, help="a model directory with a fast tokenizer")
    args = parser.parse_args()
    if args.libs:
        sys.path.insert(0, args.libs)
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    for name, measure in (("llguidance", measure_llguidance), ("xgrammar", measure_xgrammar)):
        results = measure(tokenizer)
        print(name, "  ".join(f"{key}: {value:.3g}" for key, value in results.items()))


if __name__ == "__main__":
    main()
