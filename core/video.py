"""Editing a face video: every frame aligned with landmarks smoothed over time, one generator tuned on all frames
(PTI from the e4e codes, smoothed), the edit, and each frame's face pasted back; the MP4 keeps the input's frame
rate and sound. The recipe follows STIT (Tzaban et al. 2022, "Stitch it in Time"): smooth alignment and pivots,
tune one generator on the whole clip, blend with a mask.

    clip = read_video("talk.mp4")
    edit = edit_video(playground, clip, [("Smiling", 2.0)])    # VideoEdit: frames, measures
    write_video("out.mp4", edit.frames, clip.fps, audio_from="talk.mp4")

`smooth=False` is the naive baseline: each frame aligned and encoded on its own (the same tuning and paste-back).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from core import identity
from core.faces import AlignedFace, detect_faces, face_landmarks, ffhq_quad, pil_to_tensor, warp_quad
from core.inversion import PRESETS, encoder_pivot, pivotal_tuning
from core.paste import paste_back

if TYPE_CHECKING:
    from core.pipeline import Edit, Playground

MAX_FRAMES = 300  # longer clips are refused (a clear message): every frame is tuned on and pasted back
MAX_PIXELS = 3840 * 2160
LANDMARK_SIGMA = 2.0  # frames: the Gaussian that smooths landmarks over time (STIT smooths its crops alike)
CODE_SIGMA = 1.0  # frames: the Gaussian that smooths the e4e pivots over time
KEYFRAMES = 8  # frames the generator is tuned on by default (spread over the clip): the CPU's budget
Progress = Callable[[str, int, int], None]  # (phase, done, total)


class VideoError(ValueError):
    """A video that cannot be edited: unreadable, too long, too large, or without a face (the message says which)."""


@dataclass
class Clip:
    """Decoded frames (RGB uint8 [H, W, 3]), the frame rate, and whether the file has sound."""

    frames: list[np.ndarray]
    fps: float
    path: Path | None = None
    audio: bool = False


def read_video(path: str | Path, *, max_frames: int = MAX_FRAMES) -> Clip:
    """All frames of a video file; `VideoError` for an unreadable file, a clip over `max_frames` or over
    MAX_PIXELS a frame."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        if width * height > MAX_PIXELS:
            raise VideoError(f"{path.name}: {width}x{height} frames are larger than 4K; resize the video first")
        frames = []
        for raw in reader:
            if len(frames) == max_frames:
                reader.close()
                raise VideoError(f"{path.name} is longer than {max_frames} frames ({max_frames / meta['fps']:.1f} s "
                                 f"at {meta['fps']:g} fps): cut it shorter")
            frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
    except (RuntimeError, OSError, StopIteration, KeyError) as err:
        raise VideoError(f"{path.name} is not a video we can read ({type(err).__name__}: {err})") from None
    if not frames:
        raise VideoError(f"{path.name} has no frames")
    return Clip(frames, float(meta["fps"]), path, bool(meta.get("audio_codec")))


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float, *, audio_from: str | Path | None = None
                ) -> Path:
    """An H.264 MP4 of the frames at `fps`, with the sound of the file `audio_from` (the input clip, which must
    have sound)."""
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    audio = str(audio_from) if audio_from is not None else None
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, quality=8, macro_block_size=2,
                                         audio_path=audio, audio_codec="aac" if audio else None)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def track_landmarks(frames: Sequence[np.ndarray], *, smooth: bool = True) -> list[np.ndarray | None]:
    """68 landmarks per frame (None where no face is found): the face nearest the previous frame's, so the same
    person is followed; smoothed over time with a Gaussian of LANDMARK_SIGMA frames within each run of frames that
    have a face."""
    found: list[np.ndarray | None] = []
    previous = None
    for frame in frames:
        boxes = detect_faces(Image.fromarray(frame))
        if not boxes:
            found.append(None)
            continue
        if previous is not None:
            centre = previous.mean(0)
            boxes = sorted(boxes, key=lambda b: np.hypot((b.left + b.right) / 2 - centre[0],
                                                          (b.top + b.bottom) / 2 - centre[1]))
        previous = face_landmarks(Image.fromarray(frame), boxes[0])
        found.append(previous)
    if smooth:
        for run in runs_of_faces(found):
            stacked = np.stack([found[i] for i in run])
            smoothed = scipy.ndimage.gaussian_filter1d(stacked, LANDMARK_SIGMA, axis=0, mode="nearest")
            for i, points in zip(run, smoothed, strict=True):
                found[i] = points
    return found


def runs_of_faces(found: Sequence[object | None]) -> list[list[int]]:
    """The indices of consecutive frames that have a face, run by run."""
    runs, current = [], []
    for i, item in enumerate(found):
        if item is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    return runs + ([current] if current else [])


@dataclass
class VideoEdit:
    """The edited frames (every frame; those without a face unchanged), the aligned crops, their reconstructions
    and edits ([N, 3, S, S] for the N frames with a face), and the measures of `video_measures`."""

    frames: list[np.ndarray]
    with_face: list[int]
    crops: torch.Tensor
    reconstructions: torch.Tensor
    edited: torch.Tensor
    measures: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)  # per pair of consecutive frames (`video_measures`)
    timings: dict[str, float] = field(default_factory=dict)


def edit_video(playground: Playground, clip: Clip, edits: Sequence[Edit], *, smooth: bool = True,
               steps: int = 100, lr: float = 1e-3, keyframes: int | None = KEYFRAMES, locality: bool = False,
               progress: Progress | None = None) -> VideoEdit:
    """The clip with `edits` applied to its face (`Playground.edit`'s list of (direction, strength)), STIT-style
    (module docstring); `smooth=False` for the per-frame baseline. The generator is tuned (PTI, `steps` at `lr`)
    on `keyframes` frames spread evenly over the clip (None: on every frame, as STIT does on a GPU; a step costs
    as many images as frames) and draws every frame. `VideoError` when no frame has a face."""
    report = progress or (lambda phase, done, total: None)
    timings, started = {}, time.perf_counter()
    G = playground.generator
    landmarks = track_landmarks(clip.frames, smooth=smooth)
    with_face = [i for i, points in enumerate(landmarks) if points is not None]
    if not with_face:
        raise VideoError("no face was found in any frame of this video")
    faces = []
    for n, i in enumerate(with_face):
        quad = ffhq_quad(landmarks[i])
        faces.append(AlignedFace(warp_quad(Image.fromarray(clip.frames[i]), quad, G.size), landmarks[i], quad, None))
        report("align", n + 1, len(with_face))
    timings["align"] = time.perf_counter() - started
    crops = torch.cat([pil_to_tensor(face.image) for face in faces]).to(playground.device)

    started = time.perf_counter()
    encoder = playground.encoder("e4e")
    with torch.no_grad():
        pivots = torch.cat([encoder_pivot(encoder, size=encoder.encoder.input_size)(crops[i:i + 8])
                            for i in range(0, len(crops), 8)])
    if smooth:
        row_of = {frame: row for row, frame in enumerate(with_face)}
        for run in runs_of_faces(landmarks):
            rows = [row_of[i] for i in run]
            pivots[rows] = torch.from_numpy(scipy.ndimage.gaussian_filter1d(
                pivots[rows].cpu().numpy(), CODE_SIGMA, axis=0, mode="nearest")).to(pivots)
    fast = PRESETS["fast"]  # bf16 and channels-last on the CPU, as PTI's fast preset
    keys = (np.linspace(0, len(crops) - 1, keyframes).round().astype(int) if keyframes and keyframes < len(crops)
            else np.arange(len(crops)))
    keys = torch.from_numpy(np.unique(keys))
    tuned = pivotal_tuning(G, crops[keys], pivot=pivots[keys], steps=steps, lr=lr, locality=locality,
                           early_stop=None, progress=lambda step, total, values: report("tune", step, total),
                           autocast=fast.autocast, channels_last=fast.channels_last)
    result = dataclasses.replace(tuned, pivot=pivots.cpu())  # every frame's code, the keyframes' generator
    result.reconstruction = playground.edit(result, [], batch=8)
    timings["invert"] = time.perf_counter() - started

    started = time.perf_counter()
    edited = playground.edit(result, edits, batch=8)
    frames, masks = list(clip.frames), []
    for n, (i, face) in enumerate(zip(with_face, faces, strict=True)):
        pasted = paste_back(Image.fromarray(clip.frames[i]), face, edited[n], unedited=result.reconstruction[n],
                            measure=False)
        frames[i] = np.asarray(pasted.image)
        masks.append(pasted.mask > 0.5)
        report("paste", n + 1, len(with_face))
    timings["edit_and_paste"] = time.perf_counter() - started
    out = VideoEdit(frames, with_face, crops.cpu(), result.reconstruction, edited, timings=timings)
    out.measures, out.curves = video_measures(clip, out, masks)
    return out


def video_measures(clip: Clip, edit: VideoEdit, masks: Sequence[np.ndarray]
                   ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Temporal consistency and identity of an edited clip, `masks` [H, W] bool the inner face of each frame of
    `edit.with_face` (where its paste-back mask is over 0.5); and per pair of consecutive frames with a face, the
    input's and the edited clip's change and the motion error (curves over time).

    flicker: the mean absolute frame-to-frame change inside the face masks (0..255), of the edited clip over the
    input clip's own (1: as much as the input; a per-frame edit that jitters is above it, a frozen face below);
    motion_error: the mean absolute difference between the edited clip's frame-to-frame change and the input's
    there (0: the face moves exactly as in the input; jitter and frozen faces both raise it); identity: FaceNet
    cosine of each edited face to its frame's aligned face, mean and minimum; frames_with_face: their share."""
    changes: dict[str, list[float]] = {"input": [], "edited": [], "motion_error": []}
    for k, (a, b) in enumerate(zip(edit.with_face, edit.with_face[1:], strict=False)):
        if b != a + 1:
            continue
        mask = masks[k] | masks[k + 1]
        steps = {name: frames[b].astype(np.float32) - frames[a].astype(np.float32)
                 for name, frames in (("input", clip.frames), ("edited", edit.frames))}
        for name, step in steps.items():
            changes[name].append(np.abs(step).mean(-1)[mask].mean())
        changes["motion_error"].append(np.abs(steps["edited"] - steps["input"]).mean(-1)[mask].mean())
    similarity = identity.similarity(identity.embed(edit.edited), identity.embed(edit.crops)).numpy()
    curves = {name: [float(v) for v in values] for name, values in changes.items()}
    return {"flicker": float(np.mean(changes["edited"]) / max(np.mean(changes["input"]), 1e-6)) if changes["input"]
            else float("nan"),
            "input_change": float(np.mean(changes["input"])) if changes["input"] else float("nan"),
            "edited_change": float(np.mean(changes["edited"])) if changes["edited"] else float("nan"),
            "motion_error": float(np.mean(changes["motion_error"])) if changes["edited"] else float("nan"),
            "identity_mean": float(similarity.mean()), "identity_min": float(similarity.min()),
            "frames_with_face": len(edit.with_face) / len(clip.frames)}, curves
