"""One request of the batch loop, and how its outputs leave the loop's thread.

In a module of its own so that the loop (service.engine.batch_loop) and its running rows
(service.engine.running_batch) both use it without importing each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.engine.grammar import ConstrainedRow
from service.engine.logprobs import SampledLogprobs
from service.engine.sampling import noise_key

# Called on the loop's thread for each request: (new token ids, finished, error, their
# log-probabilities if the request asked). Must not block.
TokenSink = Callable[[list[int], bool, BaseException | None, list[SampledLogprobs] | None], None]


@dataclass(eq=False)
class BatchRequest:
    """One generation; ``cancelled`` may be set from any thread and is honoured before the next step."""

    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    ignore_eos: bool  # True: generate exactly max_new_tokens, the stop tokens masked
    sink: TokenSink
    top_k: int = 0
    min_p: float = 0.0
    min_new_tokens: int = 0  # the stop tokens are masked until this many are generated
    logprobs: int | None = None  # None: off; n: each token's log-probability and the n most likely
    grammar: ConstrainedRow | None = None  # structured output: what the next token may be
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None  # its prefill began
    cancelled: bool = False
    generated: int = 0

    def cancel(self) -> None:
        """Stop generating (any thread): the row is dropped before the next step."""
        self.cancelled = True

    def masks_stop_tokens(self) -> bool:
        """Whether the next token may not be a stop token."""
        return self.ignore_eos or self.generated < self.min_new_tokens

    def noise_key(self) -> int:
        """The key of the noise for the next token; 0 (no noise) for greedy decoding."""
        return 0 if self.temperature == 0 else noise_key(self.seed, self.generated)
