"""StyleGAN2's objective: non-saturating logistic loss, lazy R1, path-length regularisation, style mixing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.nets.stylegan2 import Generator


class MappedSynthesis(nn.Module):
    """z -> (image, W+): the generator's training forward with style mixing, as one module so that
    DistributedDataParallel and torch.compile can wrap it (they only see `forward`).

    Style mixing (probability `mixing`): the layers from a random cutoff on take the style of a second latent,
    which keeps neighbouring layers' styles from depending on each other. The cutoff is chosen with tensor ops
    (no data-dependent shapes), so the compiled graph stays one graph.
    """

    def __init__(self, generator: Generator, mixing: float = 0.9):
        super().__init__()
        self.generator, self.mixing = generator, mixing

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        ws = g.mapping(z).unsqueeze(1).repeat(1, g.n_latent, 1)
        if self.mixing > 0:
            cutoff = torch.randint(1, g.n_latent, (), device=z.device)
            cutoff = torch.where(torch.rand((), device=z.device) < self.mixing, cutoff, g.n_latent)
            layer = torch.arange(g.n_latent, device=z.device).view(1, -1, 1)
            ws = torch.where(layer < cutoff, ws, g.mapping(torch.randn_like(z)).unsqueeze(1))
        return g.synthesis(ws, noise_mode="random"), ws


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss: -log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E ||dD(x)/dx||^2, D(x)) on (augmented) reals; the graph is kept so the penalty can be back-propagated."""
    real = real.detach().requires_grad_(True)
    logits = discriminator(real)
    (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean(), logits


class PathLengthPenalty(nn.Module):
    """Path-length regulariser: keeps |J_w^T y| (random image-space direction y) near its running mean,
    which makes W smoother to walk in (better inversion and editing)."""

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.tensor(0.0))

    def forward(self, images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(images, dtype=torch.float32) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        self.mean.lerp_(lengths.mean().detach(), self.decay)
        return (lengths - self.mean).square().mean()
