"""Arrival schedules: constant spacing, and a Poisson process that a seed makes repeatable."""

from __future__ import annotations

import itertools

import pytest

from loadtest.traffic.arrivals import arrival_offsets_s


def test_constant_arrivals_are_evenly_spaced() -> None:
    assert arrival_offsets_s(4, 2.0, "constant") == [0.0, 0.5, 1.0, 1.5]


def test_poisson_arrivals_have_the_asked_mean_rate_and_a_seed_repeats_them() -> None:
    offsets = arrival_offsets_s(200, 5.0, "poisson", seed=7)

    gaps = [later - earlier for earlier, later in itertools.pairwise(offsets)]
    assert offsets[0] == 0.0
    assert all(gap > 0 for gap in gaps)
    assert len(gaps) / offsets[-1] == pytest.approx(5.0, rel=0.10)
    assert arrival_offsets_s(200, 5.0, "poisson", seed=7) == offsets
    assert arrival_offsets_s(200, 5.0, "poisson", seed=8) != offsets
    # Exponential gaps vary: their spread is about their mean, unlike constant spacing.
    mean = sum(gaps) / len(gaps)
    spread = (sum((gap - mean) ** 2 for gap in gaps) / len(gaps)) ** 0.5
    assert spread == pytest.approx(mean, rel=0.25)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        arrival_offsets_s(3, 0.0, "poisson")
