"""Inverting a photo from the app, shared by the Invert and Compare tabs: the photo picker, the methods, the
measures table."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from core import faces, identity
from core.inversion import CHOICES, ENCODER_METHODS, InversionResult, invert
from core.inversion.pti import PRESETS
from demos.common import NO_FACE, AppContext, Page, gpu, progress_callback, user_errors, user_message
from demos.state import Session

METHODS = CHOICES  # label -> invert() options
TABLE_HEADERS = ["method", "PSNR dB ↑", "LPIPS ↓", "MS-SSIM ↑", f"same person (FaceNet > {identity.SAME_PERSON})",
                 "seconds"]
MEASURE_KEYS = ("psnr", "lpips", "ms_ssim")


@dataclass
class Run:
    """One method's inversion of one photo, scored against the aligned crop."""

    label: str
    result: InversionResult
    scores: dict[str, float]

    @property
    def reconstruction(self) -> Image.Image:
        return faces.tensor_to_pil(self.result.reconstruction[0])

    def table_row(self) -> list[str]:
        """The run's row under TABLE_HEADERS."""
        values = [f"{self.scores[key]:.4f}" if key != "psnr" else f"{self.scores[key]:.1f}" for key in MEASURE_KEYS]
        same = self.scores["same_person"]
        verdict = "yes" if same == 1 else "no" if same == 0 else f"{same:.0%}"
        person = f"{verdict} ({self.scores['identity']:.2f})"
        return [self.label, *values, person, f"{self.result.timings.get('total', float('nan')):.1f}"]

    def table_column(self) -> list[list[str]]:
        """The same as (header, value) rows, for one run in a narrow column."""
        return [list(pair) for pair in zip(TABLE_HEADERS, self.table_row(), strict=True)]


def photo_upload(**options: Any) -> gr.Image:
    """An image upload that hands the file untouched to core's loader (which handles EXIF, 16-bit, CMYK), and
    answers a file PIL cannot open (corrupt, HEIC, not an image) with a message instead of a bare "Error".

    gradio reads the upload in `preprocess` before any handler runs and has no hook for its errors, so this one
    component's `preprocess` is wrapped (a subclass would make gradio write a .pyi stub next to this file)."""
    photo = gr.Image(type="filepath", image_mode=None, **options)
    read = photo.preprocess

    def preprocess(payload: Any) -> str | None:
        try:
            return read(payload)
        except Image.DecompressionBombError as err:  # a small file declaring a huge image: refused before decoding
            raise user_message(f"This image is too large to process: {err}", "Image too large") from None
        except (OSError, ValueError, SyntaxError):  # PIL's UnidentifiedImageError is an OSError
            name = getattr(payload, "orig_name", None) or "this file"
            raise user_message(f"{name} is not an image we can read (JPEG, PNG, WebP, ...).",
                               "Unreadable image") from None

    photo.preprocess = preprocess
    return photo


@functools.lru_cache(maxsize=32)
def _aligned(photo: str, modified: float, size: int) -> faces.AlignedFace:
    """One alignment per uploaded file: the preview and the job that follows reuse it (gradio keeps one path per
    upload; the modification time guards against a reused path)."""
    return faces.align_face(photo, size=size)


def aligned_face(ctx: AppContext, photo: str) -> faces.AlignedFace:
    """The photo's largest face FFHQ-aligned at the generator's size, and where it was (aligned once per upload)."""
    return _aligned(photo, Path(photo).stat().st_mtime, ctx.generator.size)


def aligned_crop(ctx: AppContext, photo: str | None) -> Image.Image:
    """The FFHQ-aligned crop of the photo's largest face, at the generator's size (aligned once per upload)."""
    if not photo:
        raise user_message("Upload a photo or pick an example first.", "No photo")
    face = aligned_face(ctx, photo)
    try:
        warning = face.size_warning()
    except faces.FaceTooSmall as error:
        raise user_message(f"This face is too small: {error}.", "Face too small") from None
    if warning:
        gr.Warning(f"Small face: {warning}.", title="Small face")
    return face.image


def in_photo(ctx: AppContext, photo: str, image: torch.Tensor, unedited: torch.Tensor | None = None) -> Image.Image:
    """A face result [1, 3, S, S] put back into the uploaded photo it came from, full size (`core.paste`); given the
    face before the edit (`unedited`), the mask also takes in what the edit changed around the face (hair)."""
    return ctx.playground.paste_back(photo, aligned_face(ctx, photo), image, unedited=unedited, measure=False).image


def preset_locality(preset: str) -> bool:
    """Whether a preset of `core.inversion.PRESETS` runs PTI's locality regulariser: where the checkbox starts."""
    return PRESETS[preset].locality


def preset_steps(preset: str) -> tuple[int, int]:
    """PTI's (pivot steps, tuning steps) under a preset of `core.inversion.PRESETS`: what the sliders start at."""
    return PRESETS[preset].project_steps, PRESETS[preset].steps


@gpu
def run_method(ctx: AppContext, session: Session, crop: Image.Image, label: str, latent_steps: int,
               tune_steps: int, progress: gr.Progress, preset: str = "fast", locality: bool | None = None) -> Run:
    """Invert the aligned crop with one of `METHODS`; latent_steps are W/W+ steps or PTI's pivot steps, which
    override PTI's `preset` (the rest of its settings: precision, LPIPS backbone), as `locality` does if given."""
    options = dict(METHODS[label])
    encoder = options["method"] if options["method"] in ENCODER_METHODS else options.get("pivot")
    if encoder in ENCODER_METHODS:
        options["encoder"] = ctx.encoder(encoder)
    if options["method"] == "pti":
        options |= {"preset": preset, "project_steps": int(latent_steps), "steps": int(tune_steps)}
        options |= {} if locality is None else {"locality": bool(locality)}
    elif options["method"] not in ENCODER_METHODS:
        options["steps"] = int(latent_steps)
    started = time.perf_counter()
    result = invert(ctx.generator, crop, progress=progress_callback(progress, session, label), **options)
    result.timings.setdefault("total", time.perf_counter() - started)
    return Run(label, result, {k: v[0] for k, v in result.measure(faces.pil_to_tensor(crop)).items()})


def photo_picker(ctx: AppContext, name: str, label: str = "Photo") -> tuple[gr.Image, gr.Image]:
    """An upload box with the examples under it, and beside it the aligned crop, shown as soon as a photo arrives.
    Returns (photo, crop), with elem_ids `{name}-photo` and `{name}-crop`."""
    with gr.Row(equal_height=True):
        with gr.Column(scale=3):
            photo = photo_upload(label=label, sources=["upload", "clipboard"], height=280, elem_id=f"{name}-photo")
        crop = gr.Image(label="Aligned face (what the model sees)", format="png", height=280, interactive=False,
                        elem_classes="face", scale=2, elem_id=f"{name}-crop")

    @user_errors
    def align(path: str | None) -> Image.Image | None:
        """The crop preview; no face is a warning (the crop empties), the Invert button will refuse it."""
        try:
            return aligned_crop(ctx, path) if path else None
        except faces.NoFaceFound:
            gr.Warning(NO_FACE, title="No face found")
            return None

    if ctx.examples:
        gr.Examples(ctx.examples, inputs=photo, outputs=crop, fn=align, run_on_click=True, cache_examples=False,
                    label="Examples (click one)", examples_per_page=6, api_name=False)
    gr.on([photo.upload, photo.clear], align, photo, crop, api_name=False, show_progress="minimal")
    return photo, crop


def step_sliders(name: str, latent: int, tuning: int) -> tuple[gr.Slider, gr.Slider]:
    """The two step counts of an inversion: latent (W / W+, or PTI's pivot) and PTI's generator tuning."""
    return (gr.Slider(10, 1000, latent, step=10, label="Latent steps", info="W / W+, or PTI's pivot",
                      elem_id=f"{name}-latent-steps"),
            gr.Slider(10, 500, tuning, step=10, label="Tuning steps (PTI)",
                      info="stops early once LPIPS ≤ 0.06 (scored at 256 px)",
                      elem_id=f"{name}-tune-steps"))


def job_buttons(label: str) -> tuple[gr.Button, gr.Button]:
    """A primary button starting a long job and a Stop button beside it (wire them with `wire_job`)."""
    with gr.Row():
        return (gr.Button(label, variant="primary", scale=3, min_width=80),
                gr.Button("Stop", variant="secondary", scale=1, min_width=60))


def wire_job(ctx: AppContext, page: Page, buttons: tuple[gr.Button, gr.Button], fn: Callable, inputs: list,
             outputs: list, api_name: str, progress_on: gr.components.Component) -> None:
    """Run `fn(session, *inputs)` as a queued heavy job, its progress bar on one output; Stop cancels it in gradio
    and ends its loop in core (the job's progress callback sees the session's stop flag)."""
    go, stop = buttons
    running = go.click(fn, [page.session, *inputs], outputs, api_name=api_name, show_progress_on=progress_on,
                       **ctx.heavy)
    stop.click(Session.request_stop, page.session, None, cancels=[running], queue=False, api_name=False)
