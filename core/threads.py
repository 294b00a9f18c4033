"""How many CPU threads torch should use: all free cores, and fewer when other jobs already hold some.

torch takes every core by default. On a machine another job shares, its OpenMP threads then wait on the busy cores
at every barrier: beside another 2-thread PTI job on the 2-core machine, the fast PTI preset with 2 threads took
2-3x as long as with 1 (benchmarks/README.md, "CPU threads").

What other jobs use is read *now*, from the kernel's CPU counters over a quarter of a second: the load average lags
by minutes, so a photo inverted right after another one would see its predecessor's load as a competitor and get 1
thread on an idle machine (the same section).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

PROC_STAT = Path("/proc/stat")


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat's first line."""
    fields = [int(value) for value in PROC_STAT.read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(interval: float = 0.25) -> float:
    """How many cores other processes keep busy right now (Linux: /proc/stat over `interval`; elsewhere the 1-minute
    load average)."""
    cores = os.cpu_count() or 1
    if not PROC_STAT.is_file():
        return min(float(cores), os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    busy, total = _cpu_times()
    time.sleep(interval)
    busy_after, total_after = _cpu_times()
    return cores * (busy_after - busy) / max(total_after - total, 1)


def free_cores() -> int:
    """Cores this process may run on minus those other jobs keep busy, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, round(cores - busy_cores())))


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to `threads` (None: `free_cores()`, read now) and return the number set."""
    threads = threads or free_cores()
    torch.set_num_threads(threads)
    return threads
