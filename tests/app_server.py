"""Test helper: `python demos/app.py` started for real on a free localhost port, with a small generator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from core.checkpoints import save_generator
from core.nets.stylegan2 import Generator

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
START_TIMEOUT_S = 240  # imports of torch, gradio and dlib on a busy 2-core machine


def small_generator(path: Path) -> Path:
    """A 64 px generator (random weights, seeded) saved where the app can load it with --model."""
    torch.manual_seed(0)
    generator = Generator(64, style_dim=64, n_mlp=2, channel_base=1024, channel_max=64)
    generator.w_avg.copy_(generator.mean_latent(256)[0])
    return save_generator(generator, path)


def face_photo() -> Path | None:
    """A real, unaligned face photo from ../shared/data/faces, or None when that folder is not beside the repo."""
    return next(iter(sorted((FACES / "celeba" / "eval").glob("*.jpg"))), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    log: list[str]  # the app's stdout and stderr lines so far


@contextmanager
def running_app(model: Path | str, *extra_args: str) -> Iterator[RunningApp]:
    """Start the app as a user would and yield its URL once it prints it; stop it afterwards."""
    command = [sys.executable, "demos/app.py", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(_free_port()), *extra_args]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("open http" in line for line in lines):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start:\n" + "".join(lines))
            time.sleep(0.5)
        yield RunningApp(next(line for line in lines if "open http" in line).split("open ", 1)[1].strip(), lines)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
