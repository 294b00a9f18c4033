"""InterFaceGAN's recipe for a generator of our own (Shen et al. 2020): sample seeded latents, label the faces
with the attribute classifier (and the head yaw with dlib's landmarks), fit a linear boundary in W to the top and
bottom share of each score, and make conditional variants by projecting out an entangled attribute's normal.
`measure_directions` then walks seeded faces along each direction and reports what moved: the target score, the
other attributes, and the identity (dlib descriptors)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core import editing, faces
from core.artifacts import sha256_of
from core.attributes import AttributeClassifier, head_yaw, load_attribute_classifier
from core.editing import Direction
from core.measures import DLIB_SAME_PERSON, face_descriptors
from core.nets.stylegan2 import Generator
from core.registry import load_generator, resolve

ATTRIBUTES = ("Smiling", "Young", "Male", "Eyeglasses", "Blond_Hair", "Black_Hair")
YAW = "Yaw"
CONDITIONAL = (("Young", "Male"), ("Male", "Young"), ("Eyeglasses", "Male"))  # the most entangled pairs measured
MEASURE_STRENGTHS = (-3.0, -1.5, 1.5, 3.0)


@torch.no_grad()
def sample_faces(generator: Generator, n: int, seed: int = 0, psi: float = 1.0, batch: int = 25
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(W latents [N, D], images uint8 [N, H, W, 3]) of n seeded samples (z from `manual_seed(seed)`)."""
    z = torch.randn(n, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    latents, images = [], []
    for chunk in z.split(batch):
        w = generator.mapping(chunk.to(generator.w_avg.device), truncation_psi=psi)
        latents.append(w.cpu())
        images.append(faces.to_uint8(generator.synthesis(w)))
    return torch.cat(latents), torch.cat(images)


def score_faces(classifier: AttributeClassifier, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    """Every attribute's logit [N] and the yaw proxy [N] of uint8 faces [N, H, W, 3]."""
    chunks = [faces.from_uint8(chunk) for chunk in images.split(batch)]
    logits = torch.cat([classifier.logits(chunk) for chunk in chunks])
    yaw = torch.cat([head_yaw(chunk) for chunk in chunks])
    return {**{name: logits[:, i] for i, name in enumerate(classifier.names)}, YAW: yaw}


def fit_direction(latents: torch.Tensor, scores: torch.Tensor, name: str, share: float = 0.1) -> Direction:
    """The unit normal separating the latents with the top `share` of scores from those with the bottom `share`
    (InterFaceGAN's split; it keeps the confident labels), pointing towards higher scores."""
    if not 0 < share <= 0.5:
        raise ValueError(f"share must be in (0, 0.5], got {share}")
    count = max(1, int(len(scores) * share))
    order = scores.argsort()
    chosen = torch.cat([order[:count], order[-count:]])
    labels = torch.cat([torch.zeros(count), torch.ones(count)])
    return editing.linear_boundary(latents[chosen], labels, name)


def fit_directions(latents: torch.Tensor, scores: dict[str, torch.Tensor], names: Sequence[str],
                   conditional: Sequence[tuple[str, str]] = (), share: float = 0.1) -> list[Direction]:
    """A boundary per name, then each (primary, condition) pair's conditional direction `primary|condition`."""
    missing = [name for name in {*names, *(n for pair in conditional for n in pair)} if name not in scores]
    if missing:
        raise ValueError(f"no scores for {missing}; scored: {', '.join(scores)}")
    base = {name: fit_direction(latents, scores[name], name, share) for name in names}
    for pair in conditional:
        for name in pair:
            base.setdefault(name, fit_direction(latents, scores[name], name, share))
    return [*(base[n] for n in names), *(editing.conditional(base[a], base[b]) for a, b in conditional)]


def cosines(directions: Sequence[Direction]) -> dict[str, float]:
    """Cosine between every two directions' normals, {"a·b": cos}: how entangled the boundaries are."""
    return {f"{a.name}·{b.name}": float(torch.dot(a.vector, b.vector) / (a.vector.norm() * b.vector.norm()))
            for i, a in enumerate(directions) for b in directions[i + 1:]}


@torch.no_grad()
def measure_directions(generator: Generator, classifier: AttributeClassifier, directions: Sequence[Direction], *,
                       samples: int = 64, seed: int = 1000, psi: float = 0.7,
                       strengths: Sequence[float] = MEASURE_STRENGTHS, watch: Sequence[str] = ATTRIBUTES,
                       progress: bool = True) -> list[dict]:
    """Walk `samples` seeded faces (ψ = psi, the way faces are edited) along every direction; one row each.

    Score changes are in standard deviations of that score over the unedited faces, so attributes compare:
    `target` is the direction's own score change per strength (for a conditional `a|b` the score of `a`);
    `changes` every watched score's change at the largest |strength| (the first such), `others` the mean |change|
    of the other scores there and `worst` the one that moved most; `id_cos` is the dlib descriptor cosine to the
    unedited face per strength, `same` the share of faces still the same person by dlib's rule (distance < 0.6)
    at that largest |strength|.
    """
    start = time.time()
    latents, images = sample_faces(generator, samples, seed, psi)
    before = score_faces(classifier, images)
    spread = {name: float(value.std()) + 1e-6 for name, value in before.items()}
    reference = face_descriptors(images.numpy())
    largest = max(strengths, key=abs)
    rows = []
    for direction in directions:
        target = direction.name.split("|")[0]
        watched = list(dict.fromkeys([*watch, YAW, target]))
        row: dict = {"direction": direction.name, "strengths": list(strengths), "target": [], "id_cos": []}
        for strength in strengths:
            edited = torch.cat([faces.to_uint8(generator.synthesis(editing.apply(chunk, direction, strength)))
                                for chunk in latents.split(25)])
            after = score_faces(classifier, edited)
            change = {name: float((after[name] - before[name]).mean()) / spread[name] for name in watched}
            row["target"].append(change[target])
            descriptors = face_descriptors(edited.numpy())
            cos = np.sum(descriptors * reference, 1) / (np.linalg.norm(descriptors, axis=1) *
                                                        np.linalg.norm(reference, axis=1))
            row["id_cos"].append(float(np.nanmean(cos)))
            if strength == largest:
                row["changes"] = change
                others = {name: value for name, value in change.items() if name != target}
                row["others"] = float(np.mean(np.abs(list(others.values()))))
                row["worst"] = list(max(others.items(), key=lambda item: abs(item[1])))
                distance = np.linalg.norm(descriptors - reference, axis=1)
                row["same"] = float(np.mean(distance[~np.isnan(distance)] < DLIB_SAME_PERSON))
        rows.append(row)
        if progress:
            print(f"  measured {direction.name} ({time.time() - start:.0f} s)", flush=True)
    return rows


def measure_table(rows: Sequence[dict]) -> str:
    """The rows of `measure_directions` (or of a directions file's metadata) as a markdown table."""
    strengths = rows[0]["strengths"]
    largest = f"@{max(strengths, key=abs):+g}"
    head = ["direction", *(f"Δ score @{s:+g}" for s in strengths), *(f"id cos @{s:+g}" for s in strengths),
            f"same person {largest}", f"others mean abs Δ {largest}", f"most moved other {largest}",
            f"Δ of the condition {largest}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["direction"].replace("|", "\\|"), *(f"{value:+.2f}" for value in row["target"]),
                 *(f"{value:.3f}" if not math.isnan(value) else "n/a" for value in row["id_cos"]),
                 f"{row['same']:.0%}", f"{row['others']:.2f}", f"{row['worst'][0]} {row['worst'][1]:+.2f}",
                 _condition_change(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _condition_change(row: dict) -> str:
    """For a conditional `a|b`: how much b's score moved (near 0 when the conditioning works)."""
    _, _, condition = row["direction"].partition("|")
    return f"{condition} {row['changes'][condition]:+.2f}" if condition in row.get("changes", {}) else ""


def cached_samples(generator: Generator, generator_hash: str, n: int, seed: int, psi: float,
                   cache: str | Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample_faces`, kept in `cache/samples-<generator hash>-<n>-seed<seed>-psi<psi>.npz` when a folder is
    given (sampling and labelling thousands of faces takes minutes on a CPU)."""
    path = Path(cache) / f"samples-{generator_hash[:12]}-{n}-seed{seed}-psi{psi}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            return torch.from_numpy(stored["w"]), torch.from_numpy(stored["images"])
    latents, images = sample_faces(generator, n, seed, psi)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, w=latents.numpy(), images=images.numpy())
    return latents, images


def train_directions(out: str | Path, *, generator: str = "default", classifier: str = "face128-attributes",
                     samples: int = 4000, seed: int = 0, psi: float = 1.0, share: float = 0.1,
                     attributes: Sequence[str] = ATTRIBUTES, conditional: Sequence[tuple[str, str]] = CONDITIONAL,
                     measure_samples: int = 32, cache: str | Path | None = None) -> tuple[list[Direction], dict]:
    """The whole recipe: sample, label, fit, measure, save to `out` (directions + metadata); returns both."""
    model = load_generator(generator)
    generator_hash = sha256_of(resolve(generator))
    heads = load_attribute_classifier(classifier)
    start = time.time()
    latents, images = cached_samples(model, generator_hash, samples, seed, psi, cache)
    sampled = time.time()
    scores = score_faces(heads, images)
    labelled = time.time()
    directions = fit_directions(latents, scores, [*attributes, YAW], conditional, share)
    fitted = time.time()
    measured = measure_directions(model, heads, directions, samples=measure_samples) if measure_samples else []
    metadata = {
        "generator": generator, "generator_sha256": generator_hash, "n_latent": model.n_latent,
        "space": "W (apply to W or W+ latents: every row moves)", "strength_range": [-3.0, 3.0],
        "recipe": {"samples": samples, "seed": seed, "psi": psi, "share": share, "classifier": classifier,
                   "conditional": [list(pair) for pair in conditional]},
        "w_std": {d.name: float((latents @ d.vector).std()) for d in directions},
        "positive_share": {name: float((scores[name] > 0).float().mean()) for name in attributes},
        "cosines": cosines(directions[:len(attributes) + 1]),
        "measured": measured,
        "seconds": {"sampling": round(sampled - start, 1), "labelling": round(labelled - sampled, 1),
                    "fitting": round(fitted - labelled, 1), "measuring": round(time.time() - fitted, 1)},
    }
    editing.save_directions(directions, out, metadata)
    return directions, metadata
