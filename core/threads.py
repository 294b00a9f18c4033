"""How many CPU threads torch should use: all free cores, and fewer when other jobs already hold some.

torch takes every core by default. On a machine another job shares, its OpenMP threads then wait on the busy cores
at every barrier: on the 2-core machine, the fast PTI preset took 90-400 s per photo beside another 2-thread job
instead of ~45 s (benchmarks/README.md, "CPU threads"), and one thread was faster than two there.
"""

from __future__ import annotations

import os

import torch


def free_cores() -> int:
    """Cores this process may run on minus the machine's 1-minute load average (what other jobs keep busy),
    at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads to `threads` (None: `free_cores()`, read now) and return the number set."""
    threads = threads or free_cores()
    torch.set_num_threads(threads)
    return threads
