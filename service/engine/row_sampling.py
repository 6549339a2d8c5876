"""The batch loop's sampling: each row's next token from its logits, under its own request.

Stop tokens masked where the request must not stop yet, the row's grammar (structured output),
then temperature, top-p, top-k and min-p, and Gumbel noise keyed by the request, so that a row
samples the same alone or in any batch (service.engine.sampling); and the log-probabilities
the rows asked for.
"""

from __future__ import annotations

import torch

from service.engine.batch_request import BatchRequest
from service.engine.logprobs import SampledLogprobs, sampled_logprobs
from service.engine.sampling import add_gumbel_noise, sampling_distribution


def sample_rows(
    requests: list[BatchRequest], logits: torch.Tensor, stop_token_ids: frozenset[int]
) -> tuple[torch.Tensor, list[SampledLogprobs | None] | None]:
    """Each row's next token, and the log-probabilities of the rows that asked for them.

    A row whose request masks ``stop_token_ids`` (``min_new_tokens`` not reached, or ``ignore_eos``)
    cannot sample them; a row with a grammar samples what it allows."""
    distribution = logits.float()
    masked = [row for row, request in enumerate(requests) if request.masks_stop_tokens()]
    if masked and stop_token_ids:
        stop_ids = torch.tensor(sorted(stop_token_ids))
        distribution[torch.tensor(masked).unsqueeze(-1), stop_ids] = float("-inf")
    constrained = [(row, request.grammar) for row, request in enumerate(requests) if request.grammar]
    for row, grammar in constrained:
        distribution[row].masked_fill_(~grammar.allowed().to(distribution.device), float("-inf"))
    scores = distribution
    if any(request.temperature > 0 for request in requests):
        device = scores.device
        distribution = sampling_distribution(
            distribution,
            torch.tensor([request.temperature for request in requests], device=device),
            _per_row([request.top_p for request in requests], 1.0, device),
            _per_row([request.top_k for request in requests], 0, device),
            _per_row([request.min_p for request in requests], 0.0, device),
        )
        keys = torch.tensor([request.noise_key() for request in requests], device=device)
        scores = add_gumbel_noise(distribution, keys)
    tokens = scores.argmax(dim=-1)
    for row, grammar in constrained:
        tokens[row] = grammar.take(int(tokens[row]))  # or the completion that still fits
    return tokens, _logprobs(requests, distribution, tokens)


def _per_row(values: list[float] | list[int], off: float, device: torch.device) -> torch.Tensor | None:
    """A sampling filter's values per row; None when every row has it off (the filter is skipped)."""
    return None if all(value == off for value in values) else torch.tensor(values, device=device)


def _logprobs(
    requests: list[BatchRequest], distribution: torch.Tensor, tokens: torch.Tensor
) -> list[SampledLogprobs | None] | None:
    """Per row, the log-probabilities of its token if its request asked for them (None: no row did)."""
    rows = [row for row, request in enumerate(requests) if request.logprobs is not None]
    if not rows:
        return None
    index = torch.tensor(rows, device=distribution.device)
    counts = [requests[row].logprobs or 0 for row in rows]
    per_row: list[SampledLogprobs | None] = [None] * len(requests)
    for row, found in zip(rows, sampled_logprobs(distribution[index], tokens[index], counts), strict=True):
        per_row[row] = found
    return per_row
