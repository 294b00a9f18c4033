"""Quality measured inside training, as stylegan3 does: each metric is a name in `METRICS`, computed against the
held-out faces on the training device and logged beside the losses: the generator's (FD / KID / precision / recall
of its samples) and an encoder's (its round trip: reconstruction, and whether FaceNet still sees the person).

Inception weights are not available offline, and dlib does not run on the GPU machine, so the in-loop feature space
is LPIPS-AlexNet's deepest layer (unit-normalised per position, averaged over the image: 256 numbers a face, the
trunk `core.measures` already loads). The dlib-descriptor distances of the model card are measured afterwards on
the snapshots a run keeps (`benchmarks/generator_quality.py`); both spaces rank checkpoints, neither is FID.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import lpips
import numpy as np
import torch

from core import identity
from core.measures import distribution_distances, get_lpips, lpips_distance, psnr
from core.nets.stylegan2 import Generator


@dataclass
class MetricInputs:
    """What a metric sees: the EMA generator, the held-out real images (uint8 [N, 3, H, W] on the device) and a
    reference set of training images (the real-vs-real floor), with the number of samples to draw."""

    generator: Generator
    heldout: torch.Tensor
    reference: torch.Tensor | None = None
    samples: int = 1000
    seed: int = 0
    batch: int = 100
    reconstruct: Callable[[torch.Tensor], torch.Tensor] | None = None  # an encoder's round trip, [-1, 1] -> [-1, 1]
    facenet: torch.nn.Module | None = None  # the trainer's FaceNet (None: the installed graph's, `core.identity`)

    @functools.cached_property
    @torch.no_grad()
    def round_trip(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(held-out faces, their reconstructions by the encoder), both [N, 3, H, W] in [-1, 1], N = `samples` at
        most; drawn once for every metric of a measurement."""
        real = self.heldout[: self.samples].float() / 127.5 - 1
        return real, torch.cat([self.reconstruct(chunk).float().clamp(-1, 1) for chunk in real.split(self.batch)])


@torch.no_grad()
def lpips_alex_features(images: torch.Tensor, batch: int = 100) -> np.ndarray:
    """[N, 256] features of images in [-1, 1] (float) or uint8: LPIPS-AlexNet conv5, normalised, spatially averaged."""
    model = get_lpips("alex", images.device)
    rows = []
    for chunk in images.split(batch):
        if chunk.dtype == torch.uint8:
            chunk = chunk.float() / 127.5 - 1
        deepest = model.net.forward(model.scaling_layer(chunk.float()))[-1]
        rows.append(lpips.normalize_tensor(deepest).mean((2, 3)).double().cpu())
    return torch.cat(rows).numpy()


@torch.no_grad()
def generated(inputs: MetricInputs, psi: float = 1.0) -> torch.Tensor:
    """`inputs.samples` seeded images of the generator (fixed latents across calls, random noise as in training)."""
    g = inputs.generator
    z = torch.randn(inputs.samples, g.style_dim, generator=torch.Generator().manual_seed(inputs.seed))
    device = next(g.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training's RNG stays as it was
        return torch.cat([g.synthesis(g.mapping(chunk.to(device), truncation_psi=psi))
                          for chunk in z.split(inputs.batch)]).clamp(-1, 1)


def lpips_alex_distances(inputs: MetricInputs) -> dict[str, float]:
    """FD, KID x1000, precision and recall of ψ = 1 samples against the held-out faces, in LPIPS-AlexNet space."""
    real = lpips_alex_features(inputs.heldout, inputs.batch)
    fake = lpips_alex_features(generated(inputs), inputs.batch)
    return distribution_distances(real, fake)


def lpips_alex_floor(inputs: MetricInputs) -> dict[str, float]:
    """The same distances between training faces and the held-out ones: what a perfect generator would score."""
    return distribution_distances(lpips_alex_features(inputs.heldout, inputs.batch),
                                  lpips_alex_features(inputs.reference[: inputs.samples], inputs.batch))


def person_kept(inputs: MetricInputs) -> dict[str, float]:
    """FaceNet between each held-out face and its reconstruction: the share *not* given back as the same person
    first (lower is better, so the best snapshot is the one that loses the fewest people), then the mean
    similarity."""
    real, rebuilt = inputs.round_trip
    similarity = identity.similarity(identity.embed(rebuilt, net=inputs.facenet),
                                     identity.embed(real, net=inputs.facenet))
    return {"lost": 1 - identity.same_person(similarity).float().mean().item(),
            "similarity": similarity.mean().item()}


@torch.no_grad()
def reconstruction(inputs: MetricInputs) -> dict[str, float]:
    """LPIPS-AlexNet and PSNR between the held-out faces and their reconstructions."""
    real, rebuilt = inputs.round_trip
    pairs = zip(rebuilt.split(inputs.batch), real.split(inputs.batch), strict=True)
    return {"lpips": torch.cat([lpips_distance(a, b) for a, b in pairs]).mean().item(),
            "psnr": psnr(rebuilt, real).mean().item()}


# name -> function; a run's `--metrics` names them, the first one's first value picks the best snapshot.
METRICS: dict[str, Callable[[MetricInputs], dict[str, float]]] = {
    "alex": lpips_alex_distances,  # generators
    "alex_floor": lpips_alex_floor,
    "person": person_kept,  # encoders
    "reconstruction": reconstruction,
}


def measure(names: list[str], inputs: MetricInputs) -> dict[str, float]:
    """Every named metric's values, flattened as `{name}_{value}` (e.g. `alex_fd`)."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    return {f"{name}_{key}": value for name in names for key, value in METRICS[name](inputs).items()}
