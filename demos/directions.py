"""Edit directions as the app offers them, and an inversion rendered with edits, shared by Edit and Compare."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from core import editing, faces
from core.editing import Direction
from core.inversion import InversionResult
from core.nets.stylegan2 import Generator

MAX_DIRECTIONS = max(family.count for family in editing.FAMILIES.values())  # sliders per family
STRENGTH_SPAN = 5.0  # sliders go from -span to +span
VIDEO_SIDE = 256  # traversal frames are upscaled to at least this many pixels


def family_names(generator: Generator, model_name: str) -> list[str]:
    """The direction families this model has (`core.editing.FAMILIES`)."""
    return editing.families_for(generator, model_name)


def family_note(family: str) -> str:
    """What a family's strengths mean."""
    return editing.FAMILIES[family].note


@functools.cache
def direction_families(generator: Generator, model_name: str) -> dict[str, list[Direction]]:
    """The directions of every family, computed on first use (a PCA of 20k sampled latents takes seconds)."""
    return {name: editing.FAMILIES[name].find(generator, model_name, editing.FAMILIES[name].count)
            for name in family_names(generator, model_name)}


def find(families: dict[str, list[Direction]], name: str) -> Direction:
    by_name = {d.name: d for directions in families.values() for d in directions}
    if name not in by_name:
        raise ValueError(f"unknown direction {name!r}; this model has {', '.join(by_name)}")
    return by_name[name]


def edited_latents(result: InversionResult, edits: Sequence[tuple[Direction, float]], n_latent: int) -> torch.Tensor:
    """The pivot with the edits applied one after the other (strength 0 edits are skipped)."""
    return editing.apply_sequence(result.pivot, [(d, s) for d, s in edits if s], n_latent)


def render(generator: Generator, result: InversionResult, ws: torch.Tensor, *, tuned: bool = True) -> list[Image.Image]:
    """Latents drawn with the result's tuned generator (PTI) or with the original one, with the result's noise."""
    return [faces.tensor_to_pil(image) for image in result.render(generator, ws, tuned=tuned)]


def traversal(generator: Generator, result: InversionResult, ws: torch.Tensor, direction: Direction, span: float,
              frames: int, folder: Path) -> tuple[Path, Path]:
    """An animated GIF and an MP4 of `ws` moving along `direction` from -span to +span and back."""
    strengths = np.concatenate([np.linspace(-span, span, frames), np.linspace(span, -span, frames)[1:-1]])
    latents = editing.traverse(ws, direction, strengths.tolist(), generator.n_latent).flatten(0, 1)
    images = render(generator, result, latents)
    side = max(VIDEO_SIDE, images[0].width)
    pixels = [np.asarray(image.resize((side, side), Image.Resampling.LANCZOS)) for image in images]
    folder.mkdir(parents=True, exist_ok=True)
    gif, mp4 = folder / f"traversal-{direction.name}.gif", folder / f"traversal-{direction.name}.mp4"
    imageio.mimsave(gif, pixels, duration=1000 / 15, loop=0)
    imageio.mimsave(mp4, pixels, fps=15, codec="libx264", pixelformat="yuv420p", macro_block_size=16)
    return gif, mp4
