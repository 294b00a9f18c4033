"""core.threads: torch's CPU threads follow the cores other jobs leave free."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from core import threads


@pytest.mark.parametrize("busy, expected", [(0.0, 4), (1.2, 3), (2.6, 1), (3.5, 1), (9.0, 1)])
def test_free_cores_leave_the_busy_ones_to_other_jobs(monkeypatch, busy, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    assert threads.free_cores() == expected


@pytest.mark.skipif(not threads.PROC_STAT.is_file(), reason="needs Linux's /proc/stat")
def test_busy_cores_sees_a_spinning_job_now_not_a_minute_later():
    stop = time.monotonic() + 1.0

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        busy = threads.busy_cores(0.3)
    finally:
        spinner.join()
    assert 0.6 <= busy <= (os.cpu_count() or 1) + 0.1  # one core spun (plus whatever else runs)


def test_use_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert threads.use_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "free_cores", lambda: 2)
        assert threads.use_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
