"""Per-request sampling that does not depend on what else is in the batch.

Both engines decode by argmax over scores that have been scaled by the
request's temperature, masked by its top_p and perturbed with Gumbel noise
drawn from a counter-based hash of (request seed, step). The Gumbel-max trick
makes that argmax an exact sample from softmax(logits / temperature) restricted
to the top-p nucleus, and because the noise depends only on the request's own
seed and position, a request gets the same text whether it runs alone or in a
batch of 31 others, and on either engine. temperature == 0 is plain greedy.

A global torch RNG (generate's multinomial) cannot give that under continuous
batching: every request in a step shares one generator.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, cast

import torch
from transformers import LogitsProcessor

from service.engine.logprobs import SampledLogprobs, sampled_logprobs

if TYPE_CHECKING:
    from service.engine.grammar import ConstrainedRow

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
# Keys are 31-bit and never 0: 0 marks a greedy row (no noise).
_KEY_MODULUS = 2**31 - 1


def random_seed() -> int:
    """A seed for a request that did not ask for one."""
    return random.getrandbits(62)


def noise_key(seed: int, step: int) -> int:
    """The key of the noise for token ``step`` of a request with ``seed`` (splitmix64, then folded)."""
    x = (seed * 0x9E3779B97F4A7C15 + step + 1) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return x % _KEY_MODULUS + 1


def gumbel_noise(keys: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Gumbel(0, 1) noise of shape [rows, vocab], a pure function of each row's key."""
    index = torch.arange(vocab_size, device=keys.device, dtype=torch.int64)
    x = (keys.to(torch.int64).unsqueeze(-1) * vocab_size + index) & _MASK32
    # A 32-bit integer hash (multipliers below 2**27 keep int64 products exact).
    for _ in range(2):
        x = ((x ^ (x >> 16)) * 0x45D9F3B) & _MASK32
    x = x ^ (x >> 16)
    return -torch.log(-torch.log(uniform_from_bits(x)))


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Uniform in (0, 1) from 32-bit integers, strictly below 1 in float32: 23 bits plus a half
    fit float32's 24-bit mantissa. (24 bits did not: the top value rounded to 1.0, its noise was
    +inf, and about one step in 300 sampled an arbitrary token, or a masked one.)"""
    return ((bits >> 9).to(torch.float32) + 0.5) / float(1 << 23)


def sampling_distribution(
    scores: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor | None,
    top_k: torch.Tensor | None = None,
    min_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scores each row samples from, softmax of which is its distribution. Shapes: scores
    [B, V]; the rest [B].

    Scaled by the temperature, then ``top_k`` (0: off) keeps each row's k most likely tokens,
    ``top_p`` its nucleus and ``min_p`` (0: off) those at least that fraction of its most
    likely one, as vLLM does. A greedy row (temperature 0) keeps its scores as they are. A filter
    no row uses is passed as None and skipped: top-k and top-p each sort the vocabulary, which
    cost as much as the model's forward pass (SmolLM2, 8 rows: 41 ms a step with both, 2 threads).
    No Python branch on tensor values: under continuous batching on CUDA this runs
    inside a captured CUDA graph, where reading a value back to the host is illegal.
    """
    greedy = temperature == 0
    safe_temperature = torch.where(greedy, torch.ones_like(temperature), temperature)
    scaled = scores / safe_temperature.unsqueeze(-1)
    if top_k is not None:
        scaled = _mask_outside_top_k(scaled, top_k)
    if top_p is not None:
        scaled = _mask_outside_top_p(scaled, top_p)
    if min_p is not None:
        scaled = _mask_below_min_p(scaled, min_p)
    return torch.where(greedy.unsqueeze(-1), scores, scaled)


def add_gumbel_noise(distribution: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Scores whose argmax is an exact sample of each row's distribution (key 0: the argmax itself)."""
    sampled = keys != 0
    perturbed = distribution + gumbel_noise(keys, distribution.size(-1))
    return torch.where(sampled.unsqueeze(-1), perturbed, distribution)


def apply_sampling(
    scores: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor | None,
    keys: torch.Tensor,
    top_k: torch.Tensor | None = None,
    min_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scores whose argmax is each row's sample: :func:`sampling_distribution`, then the noise."""
    return add_gumbel_noise(sampling_distribution(scores, temperature, top_p, top_k, min_p), keys)


def _mask_outside_top_k(scores: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    vocab_size = scores.size(-1)
    k = torch.where(top_k > 0, top_k.clamp(max=vocab_size), torch.full_like(top_k, vocab_size))
    kth_largest = scores.sort(dim=-1, descending=True).values.gather(-1, (k - 1).unsqueeze(-1))
    return scores.masked_fill(scores < kth_largest, float("-inf"))


def _mask_below_min_p(scores: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    probabilities = scores.softmax(dim=-1)
    floor = min_p.unsqueeze(-1) * probabilities.max(dim=-1, keepdim=True).values
    return scores.masked_fill(probabilities < floor, float("-inf"))


def _mask_outside_top_p(scores: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    sorted_scores, sorted_index = torch.sort(scores, descending=False, dim=-1)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p).unsqueeze(-1)
    remove_sorted[..., -1] = False  # always keep the most likely token
    remove = remove_sorted.scatter(-1, sorted_index, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


class SeededSampler(LogitsProcessor):
    """The sampler as a ``generate()`` logits processor (used with ``do_sample=False``).

    With ``logprobs`` it keeps the step's distribution, for :meth:`logprobs_of` the token
    ``generate()`` then picks (the streamer asks, service.engine.streamer).
    """

    def __init__(
        self,
        temperature: float,
        top_p: float,
        seed: int,
        prompt_length: int,
        top_k: int = 0,
        min_p: float = 0.0,
        logprobs: int | None = None,
        grammar: ConstrainedRow | None = None,
    ) -> None:
        self._temperature = torch.tensor([temperature], dtype=torch.float32)
        self._top_p = torch.tensor([top_p], dtype=torch.float32)
        self._top_k = torch.tensor([top_k], dtype=torch.int64)
        self._min_p = torch.tensor([min_p], dtype=torch.float32)
        self._filters_top_p, self._filters_top_k, self._filters_min_p = top_p < 1, top_k > 0, min_p > 0
        self._seed = seed
        self._greedy = temperature == 0
        self._prompt_length = prompt_length
        self._logprobs = logprobs
        self._grammar = grammar
        self._distribution: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._grammar is not None:
            scores = cast(
                torch.FloatTensor,
                scores.masked_fill(~self._grammar.allowed().to(scores.device), float("-inf")),
            )
        if self._greedy:
            if self._logprobs is not None:
                self._distribution = scores
            return self._choose(scores)
        if self._temperature.device != scores.device:  # once: then no copies per token
            self._temperature = self._temperature.to(scores.device)
            self._top_p = self._top_p.to(scores.device)
            self._top_k, self._min_p = self._top_k.to(scores.device), self._min_p.to(scores.device)
        distribution = sampling_distribution(
            scores,
            self._temperature,
            self._top_p if self._filters_top_p else None,
            self._top_k if self._filters_top_k else None,
            self._min_p if self._filters_min_p else None,
        )
        if self._logprobs is not None:
            self._distribution = distribution
        step = input_ids.shape[-1] - self._prompt_length
        keys = torch.tensor([noise_key(self._seed, step)], device=scores.device)
        return self._choose(add_gumbel_noise(distribution, keys))

    def _choose(self, scores: torch.Tensor) -> torch.FloatTensor:
        """``scores`` as they are; with a grammar, only the token it takes from their argmax (which
        may be the completion that still fits, service.engine.grammar) is left for generate()."""
        if self._grammar is None:
            return cast(torch.FloatTensor, scores)
        token = self._grammar.take(int(scores[0].argmax()))
        chosen = torch.full_like(scores, float("-inf"))
        chosen[0, token] = 0
        return cast(torch.FloatTensor, chosen)

    def logprobs_of(self, token_id: int) -> SampledLogprobs:
        """The log-probabilities of the token picked at the last step (needs ``logprobs``)."""
        assert self._distribution is not None
        assert self._logprobs is not None
        tokens = torch.tensor([token_id], device=self._distribution.device)
        return sampled_logprobs(self._distribution, tokens, [self._logprobs])[0]
