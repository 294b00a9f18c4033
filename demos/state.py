"""Per-browser-session state of the app, bounded in memory and released when the session ends.

A `Session` lives in a `gr.State` (one per browser tab or gradio_client): the inversion's method, the edit
sequence and a stop flag are small. The heavy part, an inversion result with its tuned-generator weight
delta, lives in the shared `ResultCache`, which keeps at most `capacity` of them (least recently used are
dropped first, and the owner is told to run the inversion again) and forgets a session's result as soon as
gradio deletes the session's state (tab closed, or `time_to_live` passed).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

SESSION_TIME_TO_LIVE_S = 3600  # gradio drops a session's state this long after its last update


class Cancelled(Exception):
    """The user pressed Stop: raised from a progress callback to end a long loop early."""


class TimeLimit(Exception):
    """A job ran past the server's limit per job (`--job-seconds`): raised from its progress callback."""


class ResultCache:
    """Thread-safe LRU of inversion results by session id; the app's only large per-user memory."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, result: Any) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def release(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Edit:
    """One committed step of a sequential edit: `strength` along the direction called `name`."""

    name: str
    strength: float


@dataclass
class Session:
    """One user's work in progress. Its id keys the user's entry in the shared `ResultCache`."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    method: str | None = None  # the method of the result in the cache
    photo: str | None = None  # the uploaded photo that result's face was aligned from (to paste edits back into)
    edits: list[Edit] = field(default_factory=list)
    stop_requested: bool = False  # set by the Stop button, read by the running job's progress callback
    deadline: float | None = None  # time.monotonic() past which the running job ends (the server's limit)

    @property
    def folder(self) -> Path:
        """Where this session's downloads (PNG, GIF, MP4) are written; removed with the session."""
        return Path(tempfile.gettempdir()) / "stylegan-playground" / self.id

    def release(self, cache: ResultCache) -> None:
        cache.release(self.id)
        shutil.rmtree(self.folder, ignore_errors=True)

    def start_job(self, seconds: float | None = None) -> None:
        self.stop_requested = False
        self.deadline = time.monotonic() + seconds if seconds else None

    def request_stop(self) -> None:
        self.stop_requested = True

    def check_cancelled(self) -> None:
        if self.stop_requested:
            raise Cancelled
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeLimit


def session_state(cache: ResultCache) -> gr.State:
    """A `gr.State` giving every session a fresh `Session`, whose result and files go when gradio deletes it."""
    return gr.State(lambda: Session(), time_to_live=SESSION_TIME_TO_LIVE_S,
                    delete_callback=lambda session: session.release(cache))
