"""Who is serving: an instance id and the process start time.

Both go into every done event so that a load tester can tell a request that met
a fresh (cold) process from one that met a warm one. The engine times its
start-up phases from the same process start (:func:`process_age_s`).
"""

from __future__ import annotations

import os
import time
import uuid

from service.schemas import InstanceInfo

# Fallback when /proc is not there: close to process start, since `python -m
# service` imports this package first.
_IMPORTED_AT_MONOTONIC = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (Linux: from /proc, else since this module's import)."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as stat_file:
            # Field 22 is the start time in clock ticks since boot; the command
            # name (field 2) may hold spaces, so split after its closing paren.
            start_ticks = int(stat_file.read().rsplit(")", 1)[1].split()[19])
        # NOTE: the start time counts on the boot clock, to 10 ms; the wall clock and
        # /proc/stat's boot time (whole seconds) would add up to a second of error.
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED_AT_MONOTONIC


def process_started_at() -> float:
    """Unix time at which this process started (Linux: from /proc, else import time)."""
    return time.time() - process_age_s()


def current_instance(instance_id: str | None = None) -> InstanceInfo:
    return InstanceInfo(id=instance_id or uuid.uuid4().hex[:12], started_at=round(process_started_at(), 3))
