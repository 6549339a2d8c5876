"""Raw in-process ``model.generate``: the ceiling every served number is a ratio to.

The model is loaded by the service's own loader, with the same settings the
servers get (device, dtype, torch threads), so the only difference between raw and
served is the serving: the streamer, the event loop, HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RawGenerator:
    """Greedy generation of exactly ``tokens`` tokens, timed, without a streamer."""

    model: Any
    tokenizer: Any
    device: Any
    tokens: int

    def prefill_s(self, prompt: str) -> float:
        """Seconds for generate() to produce one token: prefill plus one sampling step.

        That is what a server does before it can send the first token, so served
        time to first token is compared to it.
        """
        return self._time_generate(prompt, 1)

    def generate_s(self, prompt: str) -> float:
        """Seconds for generate() to produce exactly ``tokens`` tokens (end of sequence ignored)."""
        return self._time_generate(prompt, self.tokens)

    def _time_generate(self, prompt: str, new_tokens: int) -> float:
        import torch

        messages = [{"role": "user", "content": prompt}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
        input_ids = torch.tensor([ids], device=self.device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed_s = time.perf_counter() - started
        generated = output.shape[-1] - input_ids.shape[-1]
        if generated != new_tokens:
            raise RuntimeError(f"raw generate made {generated} tokens, not {new_tokens}")
        return elapsed_s


def load_raw_generator(model_dir: Path, tokens: int, device: str, dtype: str, threads: int) -> RawGenerator:
    """Load ``model_dir`` as ``python -m service`` would with these settings (sets torch's thread count)."""
    from service.engine.loader import load_model
    from service.settings import Settings

    settings = Settings(model=str(model_dir), device=device, dtype=dtype, torch_threads=threads)  # type: ignore[arg-type]
    loaded = load_model(settings)
    raw = RawGenerator(loaded.model, loaded.tokenizer, loaded.device, tokens)
    raw.generate_s("warm-up")  # the first call pays one-time set-up; the servers warm up too
    return raw
