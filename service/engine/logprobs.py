"""Log-probabilities of the sampled tokens (OpenAI's ``logprobs`` and ``top_logprobs``).

A token's log-probability is taken under the distribution it was actually sampled from
(service.engine.sampling.sampling_distribution: after the temperature, top-k, top-p, min-p and
the stop tokens masked before ``min_tokens``), as vLLM's ``processed_logprobs`` mode gives;
a greedy request's is the model's own distribution. Computed on the inference thread for
the rows that asked, named (ids to text) on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from service.engine.base import TokenLogprob

# What vLLM sends for a token the sampling masked out (-inf is not JSON).
_LOWEST_LOGPROB = -9999.0


@dataclass(frozen=True)
class SampledLogprobs:
    """One sampled token's log-probability and the most likely tokens of its step, by id."""

    logprob: float
    top_ids: tuple[int, ...] = ()
    top_logprobs: tuple[float, ...] = ()


def sampled_logprobs(
    distribution: torch.Tensor, tokens: torch.Tensor, top_counts: Sequence[int]
) -> list[SampledLogprobs]:
    """Per row of ``distribution`` [R, V] (scores, service.engine.sampling): the log-probability
    of its token in ``tokens`` [R] and its ``top_counts[row]`` most likely tokens."""
    logprobs = distribution.float().log_softmax(dim=-1)
    chosen = logprobs.gather(-1, tokens.view(-1, 1)).view(-1).tolist()
    most = max(top_counts, default=0)
    if most == 0:
        return [SampledLogprobs(logprob) for logprob in chosen]
    top = logprobs.topk(min(most, logprobs.size(-1)), dim=-1)
    top_values, top_ids = top.values.tolist(), top.indices.tolist()
    return [
        SampledLogprobs(logprob, tuple(ids[:count]), tuple(values[:count]))
        for logprob, ids, values, count in zip(chosen, top_ids, top_values, top_counts, strict=True)
    ]


def named_logprobs(
    tokenizer: Tokenizer, token_ids: Sequence[int], found: Sequence[SampledLogprobs]
) -> tuple[TokenLogprob, ...]:
    """The tokens' text beside their log-probabilities, each token decoded on its own (as vLLM
    does). A generated special token (the EOS that ended the answer) is there with the text it
    added to the answer, none; among the most likely tokens it has its own name."""
    chosen = tokenizer.decode_batch([[token_id] for token_id in token_ids], skip_special_tokens=True)
    top_ids = [[token_id] for item in found for token_id in item.top_ids]
    texts = iter(tokenizer.decode_batch(top_ids, skip_special_tokens=False))
    named = []
    for text, item in zip(chosen, found, strict=True):
        top = tuple(TokenLogprob(next(texts), _finite(value)) for value in item.top_logprobs)
        named.append(TokenLogprob(text, _finite(item.logprob), top))
    return tuple(named)


def _finite(logprob: float) -> float:
    return max(logprob, _LOWEST_LOGPROB)
