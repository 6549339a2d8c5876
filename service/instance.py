"""Who is serving: an instance id and the process start time.

Both go into every done event so that a load tester can tell a request that met
a fresh (cold) process from one that met a warm one.
"""

from __future__ import annotations

import os
import time
import uuid

from service.schemas import InstanceInfo

# Fallback when /proc is not there: close to process start, since `python -m
# service` imports this package first.
_IMPORTED_AT = time.time()


def process_started_at() -> float:
    """Unix time at which this process started (Linux: from /proc, else import time)."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as stat_file:
            # Field 22 is the start time in clock ticks since boot; the command
            # name (field 2) may hold spaces, so split after its closing paren.
            start_ticks = int(stat_file.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as boot_file:
            boot_time = next(int(line.split()[1]) for line in boot_file if line.startswith("btime"))
        return boot_time + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def current_instance(instance_id: str | None = None) -> InstanceInfo:
    return InstanceInfo(id=instance_id or uuid.uuid4().hex[:12], started_at=round(process_started_at(), 3))
