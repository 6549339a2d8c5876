"""The per-request sampler: exact in distribution, reproducible, independent of the batch."""

from __future__ import annotations

import torch

from service.engine.sampling import apply_sampling, gumbel_noise, noise_key, uniform_from_bits

LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]])


def sample_many(temperature: float, top_p: float, draws: int = 20000) -> torch.Tensor:
    scores = LOGITS.expand(draws, -1)
    keys = torch.tensor([noise_key(7, step) for step in range(draws)])
    chosen = apply_sampling(
        scores, torch.full((draws,), temperature), torch.full((draws,), top_p), keys
    ).argmax(dim=-1)
    return torch.bincount(chosen, minlength=5).float() / draws


def test_argmax_is_a_sample_from_the_softmax() -> None:
    for temperature in (0.5, 1.0, 1.7):
        frequencies = sample_many(temperature, top_p=1.0)
        expected = torch.softmax(LOGITS[0] / temperature, dim=-1)
        assert torch.allclose(frequencies, expected, atol=0.015), (temperature, frequencies, expected)


def test_top_p_keeps_only_the_nucleus() -> None:
    probabilities = torch.softmax(LOGITS[0], dim=-1)  # 0.64, 0.24, 0.09, ...
    frequencies = sample_many(1.0, top_p=0.8)

    assert frequencies[2:].sum() == 0
    renormalised = probabilities[:2] / probabilities[:2].sum()
    assert torch.allclose(frequencies[:2], renormalised, atol=0.015)


def test_greedy_rows_are_untouched() -> None:
    scores = torch.randn(3, 50)
    keys = torch.tensor([0, noise_key(1, 0), 0])

    result = apply_sampling(scores, torch.tensor([0.0, 1.0, 0.0]), torch.ones(3), keys)

    assert torch.equal(result[0], scores[0])
    assert torch.equal(result[2], scores[2])
    assert not torch.equal(result[1], scores[1])


def test_noise_depends_only_on_the_key() -> None:
    keys = torch.tensor([noise_key(3, 0), noise_key(3, 1), noise_key(4, 0)])

    alone = gumbel_noise(keys[1:2], 1000)
    batched = gumbel_noise(keys, 1000)

    assert torch.equal(alone[0], batched[1])
    assert not torch.equal(batched[0], batched[1])
    assert not torch.equal(batched[0], batched[2])
    assert torch.isfinite(batched).all()
    assert 0 < noise_key(0, 0) < 2**31


def test_top_k_and_min_p_keep_only_the_likeliest_tokens() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]]))
    keys = torch.tensor([7, 7])
    ones = torch.ones(2)

    kept_by_k = apply_sampling(scores, ones, ones, keys, top_k=torch.tensor([2, 0]))
    kept_by_p = apply_sampling(scores, ones, ones, keys, min_p=torch.tensor([0.5, 0.0]))

    assert torch.isinf(kept_by_k[0, 2:]).all()  # k=2: two tokens left
    assert torch.isfinite(kept_by_k[0, :2]).all()
    assert torch.isfinite(kept_by_k[1]).all()  # k=0: off
    assert torch.isinf(kept_by_p[0, 2:]).all()  # 0.15 and 0.05 are under half of 0.5
    assert torch.isfinite(kept_by_p[0, :2]).all()
    assert torch.isfinite(kept_by_p[1]).all()  # min_p=0: off


def test_the_uniform_draws_stay_inside_0_1_even_at_the_extreme_bits() -> None:
    extremes = torch.tensor([0, 1, 2**31, 2**32 - 2, 2**32 - 1], dtype=torch.int64)

    uniform = uniform_from_bits(extremes)

    assert bool((uniform > 0).all())
    assert bool((uniform < 1).all())
    assert bool(torch.isfinite(-torch.log(-torch.log(uniform))).all())  # the Gumbel noise is finite
