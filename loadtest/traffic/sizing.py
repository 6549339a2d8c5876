"""Sizing ``--input-tokens`` prompts before the clock starts.

With ``--tokenizer`` (the served model's tokenizer: a local directory, a hub id in the
local cache, or one of the service's built-in names) each prompt is counted as the
server will count it, chat template included. Without one, calibration requests
(``max_tokens`` 1, outside the measured run) measure the server's tokens per word
first: the run's first request then no longer meets a cold server, which the report
says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from loadtest.clients.base import ChatClient
from loadtest.driver.runner import send_one
from loadtest.traffic.workload import SyntheticPrompts, Workload

CALIBRATION_REQUESTS = 2
_CALIBRATION_TIMEOUT_S = 600.0


def load_token_counter(name: str) -> Callable[[str], int]:
    """Count a user message's tokens, chat template included, with tokenizer ``name``.

    Raises ValueError when it cannot be loaded.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ValueError("--tokenizer needs the transformers package") from exc
    path = name
    try:  # the service's built-in names (smollm2-135m, tiny-random), when it is installed
        from service.engine.builtin_models import BUILTIN_MODELS
        from service.settings import Settings

        if builtin := BUILTIN_MODELS.get(name):
            path = str(builtin.ensure(Settings(model=name).cache_dir))
    except ImportError:
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--tokenizer {name}: cannot load it: {exc}") from exc

    def count(prompt: str) -> int:
        if tokenizer.chat_template:
            message = [{"role": "user", "content": prompt}]
            ids = tokenizer.apply_chat_template(message, add_generation_prompt=True, return_dict=False)
            return len(ids)
        return len(tokenizer.encode(prompt))

    return count


async def size_prompts(workload: Workload, client: ChatClient, requests: int) -> dict[str, Any] | None:
    """Size the run's synthetic prompts (other workloads need nothing); what was done, for results.json.

    Raises ValueError when calibration gets no prompt token count from the server.
    """
    if not isinstance(workload, SyntheticPrompts):
        return None
    if workload.count_tokens is not None:
        workload.prepare(range(requests))
        return {"method": "tokenizer", "calibration_requests": 0}
    async with httpx.AsyncClient(timeout=None) as http:
        for attempt in range(CALIBRATION_REQUESTS):
            spec = workload.request(requests + attempt)  # indices outside the run's
            trace = await send_one(client, http, spec.prompt, _CALIBRATION_TIMEOUT_S, max_tokens=1)
            prompt_tokens = (trace.usage or {}).get("prompt_tokens")
            if not prompt_tokens:
                raise ValueError(
                    f"--input-tokens: the calibration request got no prompt token count "
                    f"({trace.error or 'no usage'}); pass --tokenizer to size prompts locally"
                )
            workload.observe(len(spec.prompt.split()), prompt_tokens)
    workload.prepare(range(requests))
    return {
        "method": "calibration",
        "calibration_requests": CALIBRATION_REQUESTS,
        "tokens_per_word": round(workload.tokens_per_word, 4),
    }
