"""What every tab shares: the loaded model (`AppContext`), user-facing errors, progress with cancel, examples."""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from core import faces
from core.artifacts import CheckpointError
from core.inversion import ENCODER_METHODS
from core.nets.encoders import EncoderModel
from core.nets.stylegan2 import Generator
from core.pipeline import Playground
from core.reference_edit import ReferenceEditor
from core.style import Style
from demos.state import Cancelled, ResultCache, Session, TimeLimit

log = logging.getLogger("demos.app")
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
HEAVY_JOB = "heavy"  # concurrency id of the jobs that keep the CPU/GPU busy for seconds (inversion, video)
PROGRESS = gr.Progress()  # default argument that makes gradio pass its progress tracker (stateless as we call it)
NO_FACE = ("No face found in this photo. Try a sharper photo with one face looking at the camera, not too small "
           "and not cut off.")
PHASES = {"pivot": "finding the pivot latent", "tune": "tuning the generator"}  # core's progress phases, for users

try:  # on Hugging Face Spaces with ZeroGPU, compute functions borrow a GPU for each call
    import spaces

    def gpu(fn: Callable) -> Callable:
        return spaces.GPU(duration=180)(fn)
except ImportError:

    def gpu(fn: Callable) -> Callable:
        return fn


@dataclass
class AppContext:
    """The pipeline every tab works with (`core.pipeline.Playground`: the model and what is made for it), and the
    bounded store of per-session results."""

    playground: Playground
    results: ResultCache
    examples: list[str]
    heavy_limit: int = 1  # how many heavy jobs may run at once
    job_seconds: float | None = None  # a heavy job ends with a message past this (a public Space's limit)
    running: dict[str, Session] = field(default_factory=dict)  # browser session hash -> its session, while a job runs

    @property
    def generator(self) -> Generator:
        return self.playground.generator

    @property
    def model_name(self) -> str:
        return self.playground.model_name

    @property
    def device(self) -> torch.device:
        return self.playground.device

    def encoder(self, method: str) -> EncoderModel:
        """The `method` encoder ('psp', 'e4e') made for this app's generator, loaded once."""
        try:
            return self.playground.encoder(method)
        except KeyError:
            hint = ": use W, W+ or PTI." if method in ENCODER_METHODS else "."
            raise user_message(f"No {method} encoder is available for the model {self.model_name!r}{hint}",
                               "No encoder") from None

    def reference_editor(self) -> ReferenceEditor:
        """The Style Transformer's reference editor made for this app's generator, loaded once."""
        try:
            return self.playground.reference_editor()
        except (KeyError, FileNotFoundError, CheckpointError):
            raise user_message(f"No reference editor is available for the model {self.model_name!r}.",
                               "No reference editor") from None

    def style(self, name: str) -> Style:
        """A shipped DualStyleGAN style over this app's generator, loaded once."""
        try:
            return self.playground.style(name)
        except (KeyError, FileNotFoundError, CheckpointError, ValueError):
            raise user_message(f"The style {name!r} is not available for the model {self.model_name!r}.",
                               "No style") from None

    @contextmanager
    def job(self, session: Session, request: gr.Request) -> Iterator[None]:
        """Mark a long job running for this browser session, so that closing the tab stops it (`stop_jobs`)."""
        session.start_job(self.job_seconds)
        self.running[request.session_hash] = session
        try:
            yield
        finally:
            self.running.pop(request.session_hash, None)

    def stop_jobs(self, request: gr.Request) -> None:
        """The tab was closed: its running job, if any, ends at its next step instead of running on for nobody."""
        session = self.running.get(request.session_hash)
        if session is not None:
            session.request_stop()

    @property
    def heavy(self) -> dict[str, Any]:
        """Event options for a heavy job: queued under one concurrency id, so users wait their turn."""
        return {"concurrency_id": HEAVY_JOB, "concurrency_limit": self.heavy_limit}


@dataclass
class Page:
    """Where a tab is built: the app (for load events), the session state every handler takes, the tab itself."""

    demo: gr.Blocks
    session: gr.State
    tab: gr.Tab


# ---------------------------------------------------------------------------------------------------------------
# Errors and progress


def user_message(message: str, title: str = "Error") -> gr.Error:
    """An error pop-up for something the user can fix (not printed as a stack trace on the server)."""
    return gr.Error(message, title=title, print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """Every failure reaches the user as a short message (a `gr.Error` pop-up), never a stack trace; unexpected
    ones are logged in full on the server."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except faces.NoFaceFound:
            raise user_message(NO_FACE, "No face found") from None
        except faces.ImageError as error:
            raise user_message(f"This file is not an image we can read: {error}", "Unreadable image") from None
        except Cancelled:
            log.info("%s: stopped by the user", fn.__name__)
            raise user_message("The job was stopped; nothing was changed.", "Stopped") from None
        except TimeLimit:
            raise user_message("The job ran past this server's time limit per job; nothing was changed. Try fewer "
                               "steps (or a shorter clip).", "Time limit") from None
        except torch.OutOfMemoryError:
            raise user_message("Out of memory: try fewer steps or another photo.", "Out of memory") from None
        except (ValueError, CheckpointError, FileNotFoundError) as error:
            raise user_message(str(error)) from None
        except Exception as error:
            log.exception("unexpected error in %s", fn.__name__)
            raise user_message(f"Something went wrong on the server ({type(error).__name__}); the details are in "
                               "the server's log.", "Server error") from None

    return wrapper


def progress_callback(progress: gr.Progress, session: Session, desc: str) -> Callable[..., None]:
    """A callback for core's long loops (step, total, losses): moves the progress bar, naming the phase core
    reports, and ends the loop when the user pressed Stop."""

    def callback(step: int, total: int, values: dict | None = None) -> None:
        session.check_cancelled()
        phase = (values or {}).get("phase")
        progress((step, total), desc=f"{desc}: {PHASES.get(phase, phase)}" if phase else desc)

    return callback


# ---------------------------------------------------------------------------------------------------------------
# Latents and images


def seeded_z(generator: Generator, seed: int) -> torch.Tensor:
    """The z [1, style_dim] of a seed: the same face for the same seed on every machine."""
    z = torch.randn(1, generator.style_dim, generator=torch.Generator().manual_seed(int(seed)))
    return z.to(generator.w_avg.device)


@torch.no_grad()
def render(generator: Generator, ws: torch.Tensor) -> list[Image.Image]:
    """W [B, D] or W+ [B, n_latent, D] -> images, with the generator's stored noise (repeatable)."""
    return [faces.tensor_to_pil(image) for image in generator.synthesis(ws, noise_mode="const")]


def example_photos(generator: Generator, folder: Path | None = None, count: int = 3) -> list[str]:
    """Photos for the Invert tab's examples: the first photo of each subfolder of `folder` (`--examples`: real,
    unaligned photos), otherwise faces the model generates in which a face is detected."""
    if folder is not None and folder.is_dir():
        found = {}
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in EXAMPLE_SUFFIXES:
                found.setdefault(path.relative_to(folder).parts[0], str(path))
        return list(found.values())[:count]
    digest = hashlib.sha1(generator.w_avg.cpu().numpy().tobytes()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / "stylegan-playground-examples" / digest
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for seed in range(4 * count):
        path = folder / f"seed{seed}.png"
        if not path.is_file():
            w = generator.mapping(seeded_z(generator, seed), truncation_psi=0.6)
            render(generator, w)[0].save(path)
        if faces.detect_faces(path):
            photos.append(str(path))
        if len(photos) == count:
            break
    return photos
