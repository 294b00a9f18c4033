"""Edit directions as the app offers them, and an inversion rendered with edits, shared by Edit and Compare."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from core import editing, faces, registry
from core.editing import Direction
from core.inversion import InversionResult
from core.nets.stylegan2 import Generator
from demos.common import SHARED_FACES

MAX_DIRECTIONS = 10  # sliders per family: the embedded model's InterFaceGAN set (7 + 3 conditional) fits
COMPUTED_DIRECTIONS = 6  # GANSpace / SeFa directions offered
STRENGTH_SPAN = 5.0  # sliders go from -span to +span
# The official InterFaceGAN boundaries (PTI's copies) were fitted on the FFHQ generator: offered for it only.
OFFICIAL_INTERFACEGAN = SHARED_FACES.parents[1] / "fixtures" / "directions" / "interfacegan_directions"
FAMILY_NOTES = {
    "GANSpace": "principal axes of W; strength in standard deviations",
    "SeFa": "closed-form factorisation of the style weights; unit directions",
    "InterFaceGAN": "attribute boundaries fitted on FFHQ; unit normals",
}
SHIPPED_INTERFACEGAN_NOTE = ("CelebA attribute boundaries fitted on this model's own samples; A|B is A with B's "
                             "normal projected out; unit normals, best within ±3")
VIDEO_SIDE = 256  # traversal frames are upscaled to at least this many pixels


def shipped_directions(generator: Generator, model_name: str) -> str | None:
    """The registry name of the directions shipped for this model (fitted on it: same name and latent shape)."""
    for entry in registry.available("directions"):
        extra = entry.extra
        if (model_name in extra.get("generators", ()) and extra.get("n_latent") == generator.n_latent
                and extra.get("style_dim") == generator.style_dim and (registry.REPO_ROOT / entry.path).is_file()):
            return entry.name
    return None


def family_names(generator: Generator, model_name: str) -> list[str]:
    """The direction families this model has: GANSpace and SeFa always, InterFaceGAN for the official FFHQ model
    and for a model with shipped directions (the embedded one)."""
    official = model_name.startswith("ffhq-") and generator.style_dim == 512 and OFFICIAL_INTERFACEGAN.is_dir()
    interfacegan = official or shipped_directions(generator, model_name) is not None
    return ["GANSpace", "SeFa", *(["InterFaceGAN"] if interfacegan else [])]


def family_note(family: str, generator: Generator, model_name: str) -> str:
    """What a family's strengths mean, for this model."""
    if family == "InterFaceGAN" and shipped_directions(generator, model_name):
        return SHIPPED_INTERFACEGAN_NOTE
    return FAMILY_NOTES[family]


def _interfacegan(generator: Generator, model_name: str) -> list[Direction]:
    shipped = shipped_directions(generator, model_name)
    if shipped:
        return editing.load_directions(shipped)[:MAX_DIRECTIONS]
    return [editing.load_interfacegan(path) for path in sorted(OFFICIAL_INTERFACEGAN.glob("*.pt"))[:MAX_DIRECTIONS]]


@functools.cache
def direction_families(generator: Generator, model_name: str) -> dict[str, list[Direction]]:
    """The directions of every family, computed on first use (a PCA of 20k sampled latents takes seconds)."""
    builders = {
        "GANSpace": lambda: [editing.ganspace(generator, COMPUTED_DIRECTIONS).direction(i)
                             for i in range(COMPUTED_DIRECTIONS)],
        "SeFa": lambda: editing.sefa(generator, k=COMPUTED_DIRECTIONS),
        "InterFaceGAN": lambda: _interfacegan(generator, model_name),
    }
    return {name: builders[name]() for name in family_names(generator, model_name)}


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
