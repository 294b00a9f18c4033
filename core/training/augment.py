"""Differentiable augmentation for the discriminator: DiffAugment's operations, applied with ADA's adaptive p.

Why this mix:
- StyleGAN2-ADA's pipeline warps images with `grid_sample`; its R1 penalty differentiates through the
  augmentation twice, and `grid_sampler_2d_backward` has no derivative on today's torch (the official ADA
  crashes on torch 2.11). DiffAugment's operations (colour, integer translation, cutout) are arithmetic and
  indexing only, so they back-propagate everywhere, and R1 is taken on the augmented reals (as DiffAugment
  does), which needs no double backward through the augmentation at all.
- DiffAugment applies its operations to every image all the time, which slows early training on a data set
  that does not need it yet; ADA's controller instead raises the probability p only while the discriminator
  overfits (its sign statistic r_t = E[sign(D(real))] above a target), so a large or early run trains
  unaugmented and a small one gets exactly as much as it needs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class AdaptiveDiffAugment(nn.Module):
    """Brightness, saturation, contrast, translation (reflect-padded, up to 1/8 of the side) and cutout (a
    square of half the side), each applied to each image with probability `p`.

    `adaptive`: `observe(real_logits)` after every discriminator step and `adjust(images)` every few steps
    move p by ±(images / (speed_kimg * 1000)) towards r_t = `target`, as in ADA. Everything stays on the
    device: p is a buffer, so no step waits on the host.
    """

    def __init__(self, p: float = 0.0, adaptive: bool = True, target: float = 0.6, speed_kimg: float = 100.0,
                 translation: float = 0.125, cutout: float = 0.5):
        super().__init__()
        self.adaptive, self.target, self.speed_kimg = adaptive, target, speed_kimg
        self.enabled = adaptive or p > 0  # decided once: reading p would wait for the device
        self.translation, self.cutout = translation, cutout
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("signs", torch.zeros(2))  # running sum of sign(D(real)), count
        self.register_buffer("rt", torch.tensor(0.0))  # last r_t, for the log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        batch, _, height, width = x.shape

        def chosen() -> torch.Tensor:  # [B,1,1,1]: 1 where this image gets the operation
            return (torch.rand(batch, 1, 1, 1, device=x.device) < self.p).to(x.dtype)

        def uniform() -> torch.Tensor:
            return torch.rand(batch, 1, 1, 1, device=x.device, dtype=x.dtype)

        x = x + (uniform() - 0.5) * chosen()  # brightness
        mean = x.mean(1, keepdim=True)
        x = mean + (x - mean) * (1 + (uniform() * 2 - 1) * chosen())  # saturation x U(0, 2)
        mean = x.mean([1, 2, 3], keepdim=True)
        x = mean + (x - mean) * (1 + (uniform() - 0.5) * chosen())  # contrast x U(0.5, 1.5)
        x = self._translate(x, chosen().view(batch, 1, 1).long())
        return self._cut_out(x, chosen())

    def _translate(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        pad = int(height * self.translation + 0.5)
        if pad == 0:
            return x
        shift = torch.randint(-pad, pad + 1, (2, batch, 1, 1), device=x.device) * mask
        rows = torch.arange(height, device=x.device).view(1, -1, 1) + shift[0] + pad  # [B, H, 1]
        cols = torch.arange(width, device=x.device).view(1, 1, -1) + shift[1] + pad  # [B, 1, W]
        padded = F.pad(x, [pad] * 4, mode="reflect")
        index = torch.arange(batch, device=x.device).view(-1, 1, 1)
        return padded[index, :, rows, cols].permute(0, 3, 1, 2)  # advanced indexing puts [B, H, W] first

    def _cut_out(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        half = self.cutout / 2
        centre = torch.rand(2, batch, 1, 1, device=x.device)
        rows = (torch.arange(height, device=x.device).view(1, -1, 1) + 0.5) / height
        cols = (torch.arange(width, device=x.device).view(1, 1, -1) + 0.5) / width
        box = ((rows - centre[0]).abs() < half) & ((cols - centre[1]).abs() < half)  # [B, H, W]
        return x * (1 - box.unsqueeze(1).to(x.dtype) * mask)

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor) -> None:
        if self.adaptive:
            self.signs[0] += real_logits.detach().float().sign().sum()
            self.signs[1] += real_logits.numel()

    @torch.no_grad()
    def adjust(self, images: int) -> None:
        """Move p after `images` real images were judged (summed over all processes)."""
        if not self.adaptive:
            return
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.signs)
        self.rt.copy_(self.signs[0] / self.signs[1].clamp(min=1))
        step = torch.sign(self.rt - self.target) * images / (self.speed_kimg * 1000)
        self.p.copy_((self.p + step).clamp(0, 1))
        self.signs.zero_()
