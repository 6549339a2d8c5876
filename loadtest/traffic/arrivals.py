"""When each request is due with ``--rate``: constant spacing or a seeded Poisson process.

A fixed number in flight (``--concurrency``) measures a closed loop: the next request
waits for an answer, so a slow server is sent less. Arrivals at a rate are an open
loop, as users arrive: requests keep coming on schedule whatever the server does, and
a request the client cannot send on time (``--max-in-flight`` streams open) is late;
its latencies count from its scheduled time, so that the wait is not hidden.
"""

from __future__ import annotations

import itertools
import random
from typing import Literal

Arrivals = Literal["constant", "poisson"]
ARRIVALS: tuple[Arrivals, ...] = ("constant", "poisson")


def arrival_offsets_s(count: int, rate_per_s: float, arrivals: Arrivals, seed: int = 0) -> list[float]:
    """Seconds from the start at which each of ``count`` requests is due; the first at 0.

    Poisson: exponential gaps of mean ``1 / rate_per_s`` from ``random.Random(seed)``,
    so a seed gives the same schedule every time. Raises ValueError for a rate <= 0.
    """
    if rate_per_s <= 0:
        raise ValueError(f"the rate must be above 0, not {rate_per_s}")
    if arrivals == "constant":
        return [index / rate_per_s for index in range(count)]
    gaps = random.Random(seed)
    return list(itertools.accumulate((gaps.expovariate(rate_per_s) for _ in range(count - 1)), initial=0.0))
