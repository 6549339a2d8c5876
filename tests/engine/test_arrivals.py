"""Announced requests count as on their way until they reach the loop, or for a horizon at most."""

from __future__ import annotations

import pytest

from service.engine import arrivals
from service.engine.arrivals import Arrivals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(arrivals.time, "monotonic", clock)
    return clock


def test_announced_requests_are_on_their_way_until_they_arrive(clock: Clock) -> None:
    on_their_way = Arrivals(horizon_s=0.05)
    on_their_way.announce()
    on_their_way.announce()
    assert on_their_way.on_their_way() == 2

    on_their_way.arrived()

    assert on_their_way.on_their_way() == 1


def test_an_announcement_that_never_arrives_is_forgotten_after_the_horizon(clock: Clock) -> None:
    """A request refused after its announcement (a 4xx) must not keep an idle loop waiting."""
    on_their_way = Arrivals(horizon_s=0.05)
    on_their_way.announce()
    clock.now += 0.04
    on_their_way.announce()
    clock.now += 0.02

    assert on_their_way.on_their_way() == 1
    clock.now += 0.04
    assert on_their_way.on_their_way() == 0


def test_an_unannounced_arrival_takes_nothing(clock: Clock) -> None:
    """The engine's own warm-up request reaches the loop unannounced."""
    on_their_way = Arrivals(horizon_s=0.05)
    on_their_way.arrived()
    on_their_way.announce()

    assert on_their_way.on_their_way() == 1
