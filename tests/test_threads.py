"""core.threads: torch's CPU threads follow the cores other jobs leave free."""

from __future__ import annotations

import os

import pytest
import torch

from core import threads


@pytest.mark.parametrize("load, expected", [(0.0, 4), (1.2, 3), (2.6, 1), (3.5, 1), (9.0, 1)])
def test_free_cores_leave_the_busy_ones_to_other_jobs(monkeypatch, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert threads.free_cores() == expected


def test_use_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert threads.use_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "free_cores", lambda: 2)
        assert threads.use_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
