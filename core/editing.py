"""Latent edit directions: SeFa, GANSpace, InterFaceGAN and loaders for the official direction files.

Every edit is one small type, `Direction`, applied to latents with `apply` (or `apply_sequence`, `traverse`). Edits
act on W / W+ only, so they work the same with the original generator and with a PTI-tuned one
(`InversionResult.render(G, edited_ws)`). Official FFHQ directions are 512-D: they fit 512-D generators only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import artifacts
from core.artifacts import KINDS, CheckpointError
from core.checkpoints import read_torch_file
from core.nets.stylegan2 import EqualLinear, Generator, as_wplus
from core.registry import REGISTRY, cache_dir, made_for, resolve, resolve_kind


@dataclass(frozen=True)
class Direction:
    """A direction in W ([D]) or W+ ([n_latent, D]); `layers` limits the edit to those W+ rows (None: all)."""

    name: str
    vector: torch.Tensor
    layers: tuple[int, ...] | None = None
    source: str = ""

    def __post_init__(self):
        if self.vector.ndim not in (1, 2):
            raise ValueError(f"direction {self.name!r}: vector must be [D] or [n_latent, D], got {self.vector.shape}")


def apply(ws: torch.Tensor, direction: Direction, strength: float = 1.0, n_latent: int | None = None) -> torch.Tensor:
    """ws + strength * direction. W stays W unless the edit is per-layer or W+: then the result is W+ ([N, L, D];
    L from ws, the direction, or `n_latent`)."""
    vector = direction.vector.to(ws)
    if vector.shape[-1] != ws.shape[-1]:
        raise ValueError(f"direction {direction.name!r} is {vector.shape[-1]}-D but the latents are "
                         f"{ws.shape[-1]}-D (official FFHQ directions need a 512-D generator)")
    if ws.ndim == 2 and vector.ndim == 1 and direction.layers is None:
        return ws + strength * vector
    rows = ws.shape[1] if ws.ndim == 3 else vector.shape[0] if vector.ndim == 2 else n_latent
    if rows is None:
        raise ValueError(f"direction {direction.name!r} edits some layers only: pass W+ latents or n_latent")
    ws = as_wplus(ws, rows)
    vector = vector.expand(rows, -1) if vector.ndim == 1 else vector
    if vector.shape[0] != rows:
        raise ValueError(f"direction {direction.name!r} has {vector.shape[0]} rows, the latents {rows}")
    if direction.layers is not None:
        mask = torch.zeros(rows, 1, dtype=ws.dtype, device=ws.device)
        mask[list(direction.layers)] = 1
        vector = vector * mask
    return ws + strength * vector


def apply_sequence(
    ws: torch.Tensor, edits: Sequence[tuple[Direction, float]], n_latent: int | None = None
) -> torch.Tensor:
    """Several edits one after the other: a list of (direction, strength)."""
    for direction, strength in edits:
        ws = apply(ws, direction, strength, n_latent)
    return ws


def traverse(
    ws: torch.Tensor, direction: Direction, strengths: Sequence[float], n_latent: int | None = None
) -> torch.Tensor:
    """The latents along a direction, [S, N, ...] for S strengths: rows of a grid or frames of a GIF."""
    return torch.stack([apply(ws, direction, s, n_latent) for s in strengths])


# ----------------------------------------------------------------------------------------------------
# SeFa: closed-form factorisation (Shen & Zhou 2021)


def style_affines(G: Generator) -> list[EqualLinear]:
    """The style affine reading each W+ row: row k feeds conv k; the last row only feeds the final ToRGB."""
    return [G.conv1.conv.modulation, *(conv.conv.modulation for conv in G.convs), G.to_rgbs[-1].conv.modulation]


@torch.no_grad()
def sefa(G: Generator, layers: Sequence[int] | None = None, k: int = 10) -> list[Direction]:
    """The k directions W moves the chosen layers' styles most along: top eigenvectors of A^T A, where A stacks the
    layers' style-affine weights (each output row normalised, as in the official SeFa). Unit vectors [D]."""
    rows = list(range(G.n_latent)) if layers is None else list(layers)
    affines = style_affines(G)
    weight = F.normalize(torch.cat([affines[i].weight for i in rows]).float(), dim=1)
    eigenvalues, eigenvectors = torch.linalg.eigh(weight.T @ weight)
    order = eigenvalues.argsort(descending=True)[:k]
    chosen = None if layers is None else tuple(rows)
    return [Direction(f"sefa_{i}", eigenvectors[:, j].cpu(), chosen, "sefa") for i, j in enumerate(order.tolist())]


# ----------------------------------------------------------------------------------------------------
# GANSpace: PCA of W (Härkönen et al. 2020)


@dataclass(frozen=True)
class GANSpace:
    """Principal axes of W: mean [D], unit components [K, D] (largest variance first), their std [K]."""

    mean: torch.Tensor
    components: torch.Tensor
    std: torch.Tensor

    def direction(self, index: int, layers: Sequence[int] | None = None) -> Direction:
        """Component `index` scaled by its std, so a strength counts standard deviations."""
        return Direction(f"pc{index}", self.components[index] * self.std[index],
                         tuple(layers) if layers is not None else None, "ganspace")

    def coordinates(self, ws: torch.Tensor) -> torch.Tensor:
        """Where latents lie along each component, in standard deviations [..., K]."""
        return (ws - self.mean.to(ws)) @ self.components.to(ws).T / self.std.to(ws)


@torch.no_grad()
def ganspace(G: Generator, n_components: int = 20, samples: int = 20_000, seed: int = 0) -> GANSpace:
    """PCA of f(z) for seeded samples (an eigendecomposition of the D x D covariance)."""
    z = torch.randn(samples, G.style_dim, generator=torch.Generator().manual_seed(seed))
    w = G.style(z.to(G.w_avg.device)).double().cpu()
    mean = w.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov((w - mean).T))
    order = eigenvalues.argsort(descending=True)[:n_components]
    return GANSpace(mean.float(), eigenvectors[:, order].T.float(), eigenvalues[order].clamp_min(0).sqrt().float())


# ----------------------------------------------------------------------------------------------------
# InterFaceGAN: a linear boundary's normal (Shen et al. 2020)


def linear_boundary(latents: torch.Tensor, labels: torch.Tensor, name: str = "boundary", steps: int = 100) -> Direction:
    """Unit normal of the hyperplane separating latents [N, D] with labels [N] (1 / 0), from an L2-regularised
    logistic regression on standardised latents (InterFaceGAN fits a linear SVM; the normal plays the same role)."""
    x, y = latents.detach().double().cpu(), labels.detach().double().cpu()
    mean, std = x.mean(0), x.std(0) + 1e-8
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(1, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y) + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    normal = weight.detach() / std  # back to latent coordinates
    return Direction(name, (normal / normal.norm()).float(), None, "interfacegan")


def conditional(direction: Direction, *others: Direction, name: str | None = None) -> Direction:
    """InterFaceGAN's conditional manipulation: `direction` with the other boundaries' normals projected out, so
    moving along it leaves their attributes' scores where they were (to first order). Unit vector [D]."""
    if direction.vector.ndim != 1 or any(other.vector.ndim != 1 for other in others):
        raise ValueError("conditional directions need W directions [D]")
    vector = direction.vector.double()
    basis, _ = torch.linalg.qr(torch.stack([other.vector.double() for other in others], dim=1))
    vector = vector - basis @ (basis.T @ vector)
    if vector.norm() < 1e-6:
        raise ValueError(f"{direction.name!r} lies in the span of {[o.name for o in others]}: nothing is left")
    label = name or "|".join([direction.name, *(other.name for other in others)])
    return Direction(label, (vector / vector.norm()).float(), direction.layers, direction.source)


# ----------------------------------------------------------------------------------------------------
# Direction files of this project: safetensors, one tensor per direction, metadata in the header


def save_directions(directions: Sequence[Direction], path: str | Path, metadata: dict | None = None) -> Path:
    """Directions (+ JSON-able metadata, e.g. the generator they were fitted on, strength ranges) to safetensors."""
    names = [d.name for d in directions]
    if len(set(names)) != len(names):
        raise ValueError(f"direction names must be unique: {names}")
    header = {"directions": json.dumps([{"name": d.name, "layers": d.layers, "source": d.source} for d in directions]),
              "metadata": json.dumps(metadata or {})}
    return artifacts.write(path, "directions", {d.name: d.vector.float() for d in directions}, header)


def _read_directions(name_or_path: str | Path | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    name_or_path = made_for("directions") if name_or_path is None else name_or_path
    return artifacts.read(resolve_kind(name_or_path, KINDS["directions"].registry), "directions")


def load_directions(name_or_path: str | Path | None = None) -> list[Direction]:
    """Directions saved with `save_directions`, by registry name or path, in the order they were saved (None: the
    ones the registry made for the `default` generator)."""
    tensors, header = _read_directions(name_or_path)
    return [Direction(item["name"], tensors[item["name"]], tuple(item["layers"]) if item["layers"] else None,
                      item["source"]) for item in json.loads(header["directions"])]


def directions_metadata(name_or_path: str | Path | None = None) -> dict:
    """The metadata saved with the directions (for the shipped ones: generator, recipe, strength range, measures)."""
    return json.loads(_read_directions(name_or_path)[1]["metadata"])


# ----------------------------------------------------------------------------------------------------
# Official direction files (never unpickled beyond plain tensors)


def load_interfacegan(path: str | Path, name: str | None = None) -> Direction:
    """An InterFaceGAN / PTI boundary `.pt`: a tensor [1, 512] (W) or [1, 18, 512] (W+, e.g. `pose.pt`)."""
    tensor = read_torch_file(path)
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (2, 3) or tensor.shape[0] != 1:
        raise CheckpointError(f"{path}: expected an InterFaceGAN tensor [1, D] or [1, L, D], got {_describe(tensor)}")
    return Direction(name or Path(path).stem, tensor[0].float(), None, "interfacegan")


def load_ganspace(path: str | Path) -> GANSpace:
    """A GANSpace `*_pca.pt`: {'mean': [1, D], 'comp': [K, 1, D], 'std': [K]}."""
    data = read_torch_file(path)
    if not isinstance(data, dict) or not {"mean", "comp", "std"} <= data.keys():
        raise CheckpointError(f"{path}: expected a GANSpace dict with mean, comp, std; got {_describe(data)}")
    return GANSpace(data["mean"].reshape(-1).float(), data["comp"].flatten(1).float(), data["std"].float())


def load_w_plus(path: str | Path) -> torch.Tensor:
    """StyleCLIP global directions' `w_plus.npy`: the W+ codes [N, 18, 512] its channel directions are measured on
    (also handy as real-looking pivots). Read with allow_pickle=False."""
    array = np.load(path, allow_pickle=False)
    if array.ndim != 3:
        raise CheckpointError(f"{path}: expected W+ codes [N, L, D], got an array of shape {array.shape}")
    return torch.from_numpy(array.astype(np.float32))


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor {tuple(obj.shape)}"
    return f"a {type(obj).__name__} with keys {list(obj)[:6]}" if isinstance(obj, dict) else type(obj).__name__


# ----------------------------------------------------------------------------------------------------
# Direction families: the one table of ways to find edits (the app's Edit and Compare tabs offer what it lists)


def registered_directions(G: Generator, model_name: str) -> list[Direction]:
    """The direction files of the registry made for this model (by name, and by latent shape where recorded):
    the embedded model's own InterFaceGAN set, or the official FFHQ boundaries when the user has them cached."""
    found = []
    for entry in REGISTRY.values():
        extra = entry.extra
        if entry.kind != "directions" or model_name not in extra.get("generators", ()):
            continue
        if extra.get("style_dim", G.style_dim) != G.style_dim or extra.get("n_latent", G.n_latent) != G.n_latent:
            continue
        try:
            path = resolve(entry.name) if entry.embedded else _cached(entry.name)
        except FileNotFoundError:
            continue
        found += ([load_interfacegan(path, extra["direction"])] if extra.get("format") == "interfacegan"
                  else load_directions(path))
    return found


def conditional_first(directions: list[Direction]) -> list[Direction]:
    """Each plain direction's conditional one (`A|B`: A with B's normal projected out) in its place and the plain one
    moved to the end: the plain Young, Male and Eyeglasses drag another attribute along, their conditional ones move
    the others about half as much (`benchmarks/pti_editability.py`, per direction)."""
    conditional = {d.name.split("|")[0]: d for d in directions if "|" in d.name}
    first = [conditional.get(d.name, d) for d in directions if "|" not in d.name]
    return first + [d for d in directions if d not in first]


def _cached(name: str) -> Path:
    """An official entry's file if it is in the cache already; never downloads (listing directions is not asking)."""
    path = cache_dir() / REGISTRY[name].filename
    if not path.is_file():
        raise FileNotFoundError(path)
    return resolve(name)


@dataclass(frozen=True)
class DirectionFamily:
    """A way of finding edit directions for a generator; `find(G, model_name, k)` gives at most k of them."""

    name: str
    note: str  # what a strength of 1 means
    find: Callable[[Generator, str, int], list[Direction]]
    count: int = 6  # how many to offer
    applies: Callable[[Generator, str], bool] = lambda G, model_name: True


FAMILIES: dict[str, DirectionFamily] = {
    "GANSpace": DirectionFamily("GANSpace", "principal axes of W; strength in standard deviations",
                                lambda G, m, k: [ganspace(G, k).direction(i) for i in range(k)]),
    "SeFa": DirectionFamily("SeFa", "closed-form factorisation of the style weights; unit directions",
                            lambda G, m, k: sefa(G, k=k)),
    "InterFaceGAN": DirectionFamily(
        "InterFaceGAN", "attribute boundaries (the embedded model: CelebA attributes fitted on its own samples, A|B "
        "is A with B's normal projected out, best within ±3; the FFHQ model: the official boundaries); unit normals",
        lambda G, m, k: conditional_first(registered_directions(G, m))[:k], 10,
        lambda G, m: bool(registered_directions(G, m))),
}


def families_for(G: Generator, model_name: str) -> list[str]:
    """The names of the direction families this generator has."""
    return [name for name, family in FAMILIES.items() if family.applies(G, model_name)]
