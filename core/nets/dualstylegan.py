"""DualStyleGAN (williamyang1991/DualStyleGAN, CVPR 2022) in the official state-dict layout.

Two style paths over one StyleGAN2 generator (`generator.*`, the project's rosinality-layout Generator):

- intrinsic path: the content face's code (Z+ or W+) drives the generator as usual;
- extrinsic path: an artistic exemplar's W+ code. Its structure part goes through the structure transform
  T_s (`style`, a small lr-scaled MLP) into ModRes blocks (`res[j]`, AdaIN residual blocks) inserted after
  the coarse convolutions j <= `res_index`; its colour part goes through the colour transforms T_c
  (`res[j]`, j > `res_index`, near-identity linear layers) and is blended into the fine layers' styles.

`interp_weights[j]` sets how much of the exemplar each layer takes (the "structure vs colour" sliders:
`blend_weights(structure, color)`), `fuse_index` switches the extrinsic path off above a layer, `use_res`
off entirely. `style_transfer` is the one call the app and notebooks use.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.nets.stylegan2 import ConvLayer, EqualLinear, Generator, PixelNorm

LatentSpace = Literal["z+", "w+"]


class AdaptiveInstanceNorm(nn.Module):
    """Instance norm whose per-channel scale and shift come from a style vector (scale starts at 1)."""

    def __init__(self, channels: int, style_dim: int = 512):
        super().__init__()
        self.style = nn.Linear(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, 1)
        return gamma * F.instance_norm(x) + beta


class AdaResBlock(nn.Module):
    """ModRes: a residual (AdaIN -> conv) x 2 added to a generator feature map, scaled by `weight`.

    The convs start near zero so an untrained block leaves the generator's features unchanged.
    """

    def __init__(self, channels: int, style_dim: int = 512):
        super().__init__()
        self.conv = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.norm = AdaptiveInstanceNorm(channels, style_dim)
        self.norm2 = AdaptiveInstanceNorm(channels, style_dim)
        with torch.no_grad():
            self.conv[0].weight.mul_(0.01)
            self.conv2[0].weight.mul_(0.01)

    def forward(self, x: torch.Tensor, style: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        if weight == 0:
            return x
        return self.conv2(self.norm2(self.conv(self.norm(x, style)), style)) * weight + x


def color_transform(style_dim: int) -> EqualLinear:
    """T_c for one fine layer: an equalised linear layer initialised near the identity."""
    layer = EqualLinear(style_dim, style_dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(style_dim) * math.sqrt(style_dim) + 0.01 * torch.randn(style_dim, style_dim))
    return layer


def blend_weights(n_latent: int, res_index: int, structure: float, color: float, color_from: int | None = None
                  ) -> list[float]:
    """Per-layer `interp_weights` from the two sliders: structure (layers <= res_index), colour (the rest, or from
    layer `color_from` on: the layers between keep the content's own code). A function of the two numbers alone, so
    a style's defaults can be written from its file's metadata without building the model."""
    structure_layers = res_index + 1
    first = structure_layers if color_from is None else max(color_from, structure_layers)
    return [structure] * structure_layers + [0.0] * (first - structure_layers) + [color] * (n_latent - first)


class DualStyleGAN(nn.Module):
    """`DualStyleGAN(1024, 512, 8, 2, res_index=6)` is the official FFHQ model; smaller sizes are the same class.

    `generator_config` goes to the inner Generator (e.g. `channel_base`, `channel_max` for an embedded model);
    by default the widths follow rosinality's `channel_multiplier` (channel_base = 16384 * multiplier).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        res_index: int = 6,
        **generator_config,
    ):
        super().__init__()
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=0.01, activation=True) for _ in range(n_mlp - 6)]
        )
        generator_config.setdefault("channel_base", 16384 * channel_multiplier)
        self.generator = Generator(size, style_dim, n_mlp, **generator_config)
        self.res_index = res_index // 2 * 2
        n_latent, widths = self.generator.n_latent, self.generator.channels
        self.res = nn.ModuleList(
            AdaResBlock(widths[2 ** ((j + 1) // 2 + 2)], style_dim)
            if j <= self.res_index and j < n_latent - 1
            else color_transform(style_dim)
            for j in range(n_latent)
        )
        self.n_latent = n_latent

    @classmethod
    def over(cls, generator: Generator, res_index: int = 6) -> DualStyleGAN:
        """A fresh extrinsic path over an existing generator (shared, not copied): at weight 0 it draws exactly what
        `generator` draws, which is where the paper's progressive fine-tuning starts."""
        config = dict(generator.config)
        size, style_dim, n_mlp = config.pop("size"), config.pop("style_dim"), config.pop("n_mlp")
        model = cls(size, style_dim, n_mlp, res_index=res_index, **config)
        model.generator = generator
        return model.to(next(generator.parameters()).device)

    # -- the official call ------------------------------------------------------------------------

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        exstyles: torch.Tensor | None,
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | float | None = None,
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        z_plus_latent: bool = False,
        use_res: bool = True,
        fuse_index: int = 18,
        interp_weights: Sequence[float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Official `DualStyleGAN.forward`: intrinsic `styles` (z, Z+ or W/W+) + extrinsic W+ `exstyles` -> image.

        Returns (image, the truncated intrinsic W+ if `return_latents`). `truncation_latent=None` truncates
        towards the generator's `w_avg` (the official code needs it given; `style_transfer.py` passes 0).
        """
        latent = self.intrinsic_latent(
            styles, input_is_latent, z_plus_latent, truncation, truncation_latent, inject_index
        )
        if noise is None:
            noise = self.generator.noise_maps("random" if randomize_noise else "const", latent.shape[0], latent.device)
        weights = list(interp_weights) if interp_weights is not None else [1.0] * self.n_latent
        image = self.synthesis(latent, exstyles if use_res else None, weights, fuse_index, noise)
        return image, (latent if return_latents else None)

    def intrinsic_latent(
        self,
        styles: Sequence[torch.Tensor],
        input_is_latent: bool = False,
        z_plus_latent: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | float | None = None,
        inject_index: int | None = None,
    ) -> torch.Tensor:
        """Map (z -> w, or Z+ row by row), truncate, and mix two codes at `inject_index` -> W+ [B, n_latent, D]."""
        mapping = self.generator.style
        if not input_is_latent:
            styles = [self.generator.map_zplus(s) if z_plus_latent else mapping(s) for s in styles]
        if truncation < 1:
            center = self.generator.w_avg if truncation_latent is None else truncation_latent
            styles = [center + truncation * (s - center) for s in styles]
        full = [s if s.ndim == 3 else s.unsqueeze(1).repeat(1, self.n_latent, 1) for s in styles]
        if len(full) == 1:
            return full[0]
        index = inject_index if inject_index is not None else random.randint(1, self.n_latent - 1)
        return torch.cat([full[0][:, :index], full[1][:, index:]], 1)

    def synthesis(
        self,
        latent: torch.Tensor,
        exstyles: torch.Tensor | None,
        weights: Sequence[float],
        fuse_index: int,
        noise: Sequence[torch.Tensor | None],
    ) -> torch.Tensor:
        """The generator's synthesis with the extrinsic path woven in (no extrinsic path if `exstyles` is None).

        Layer j's style is blended with T_c(exstyle_j) when j > res_index; after conv j <= res_index the
        ModRes block adds its residual. The extrinsic path acts on layers j <= fuse_index (none if it is 0).
        """
        g = self.generator
        ws, res_styles = latent, None
        active = [exstyles is not None and 0 < fuse_index and j <= fuse_index for j in range(self.n_latent)]
        if exstyles is not None:
            ex = exstyles if exstyles.ndim == 3 else exstyles.unsqueeze(1).repeat(1, self.n_latent, 1)
            res_styles = self.style(ex.flatten(0, 1)).view_as(ex)
            ws = torch.stack(
                [
                    weights[j] * self.res[j](ex[:, j]) + (1 - weights[j]) * latent[:, j]
                    if active[j] and j > self.res_index
                    else latent[:, j]
                    for j in range(self.n_latent)
                ],
                1,
            )

        def modres(j: int, out: torch.Tensor) -> torch.Tensor:
            return self.res[j](out, res_styles[:, j], weights[j]) if active[j] and j <= self.res_index else out

        out = modres(0, g.conv1(g.input(latent.shape[0]), ws[:, 0], noise[0]))
        skip = g.to_rgb1(out, latent[:, 1])  # as in the official code, the first ToRGB reads the intrinsic code
        for k, (conv_up, conv, to_rgb) in enumerate(zip(g.convs[::2], g.convs[1::2], g.to_rgbs, strict=True)):
            j = 2 * k + 1
            out = modres(j, conv_up(out, ws[:, j], noise[j]))
            out = modres(j + 1, conv(out, ws[:, j + 1], noise[j + 1]))
            skip = to_rgb(out, ws[:, j + 2], skip)
        return skip

    # -- the one call for the app and notebooks -------------------------------------------------------

    def blend_weights(self, structure: float = 0.75, color: float = 1.0, color_from: int | None = None) -> list[float]:
        """Per-layer `interp_weights` from the two sliders (`blend_weights` below); the defaults are
        `style_transfer.py`'s `[0.75]*7 + [1]*11`."""
        return blend_weights(self.n_latent, self.res_index, structure, color, color_from)

    def style_transfer(
        self,
        content: torch.Tensor,
        exstyle: torch.Tensor,
        weights: Sequence[float] | None = None,
        *,
        content_space: LatentSpace = "z+",
        exstyle_space: LatentSpace = "z+",
        truncation: float = 0.75,
        preserve_color: bool = False,
        randomize_noise: bool = False,
    ) -> torch.Tensor:
        """Render `content` (a face code, [B, n_latent, D]) in the style of `exstyle` ([1 or B, n_latent, D]).

        Both codes are Z+ by default: what DualStyleGAN's encoder returns and what `exstyle_code.npy` stores.
        As `style_transfer.py`: truncation scales the content code towards 0 (its `truncation_latent=0`);
        `preserve_color` keeps the content's own fine-layer (colour) code in the exemplar. Deviation: the noise
        is the generator's fixed maps unless `randomize_noise`, so the result is reproducible.
        """
        content_w = content if content_space == "w+" else self.generator.map_zplus(content)
        exstyle_w = exstyle if exstyle_space == "w+" else self.generator.map_zplus(exstyle)
        if preserve_color:
            exstyle_w = exstyle_w.expand(content_w.shape[0], -1, -1)
            exstyle_w = torch.cat([exstyle_w[:, : self.res_index + 1], content_w[:, self.res_index + 1 :]], 1)
        image, _ = self(
            [content_w],
            exstyle_w,
            input_is_latent=True,
            truncation=truncation,
            truncation_latent=0,
            randomize_noise=randomize_noise,
            interp_weights=weights if weights is not None else self.blend_weights(),
        )
        return image
