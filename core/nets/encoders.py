"""Image -> W+ encoders of the pSp family (pSp, e4e), in the official state-dict layout.

Both encoders are a ResNet backbone read out as a three-level feature pyramid (coarse 16², medium 32²,
fine 64² for a 256 px input), with one small conv head (`GradualStyleBlock`, "map2style") per style vector:
coarse styles 0-2 read the coarse map, 3-6 the medium one, the rest the fine one.

- `GradualStyleEncoder` (pSp, eladrich/pixel2style2pixel): every style vector predicted independently.
- `Encoder4Editing` (e4e, omertov/encoder4editing): one w0 repeated over all layers plus per-layer deltas,
  switched on one by one during training (`progressive_stage`), which keeps codes near W and so editable.

Backbones: `ir_se50` (the official default: IR-SE-50 from ArcFace), `ir50`, `ir(_se)100/152`, and ReStyle's
`resnet34` (torchvision BasicBlocks under a 7x7 stem). The number of styles and the input size are
arguments, so the small encoder for a 128 px generator (12 styles) is the same class as the official one.
The official code reads the pyramid after body units 6, 20 and 23, i.e. the ends of stages 2-4 of IR-50;
here the taps are the stage ends of whichever backbone is chosen (identical for IR-50, and the only choice
that gives IR-100/152 the 128/256/512-channel maps the heads expect).

`EncoderModel` bundles an encoder with its decoder and `latent_avg`, as the official checkpoints do.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from core.nets.stylegan2 import EqualLinear, Generator

IR_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
RESNET34_UNITS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
COARSE_STYLES, MEDIUM_STYLES = 3, 7  # styles [0, 3) coarse, [3, 7) medium, [7, n) fine
LatentSpace = Literal["w+", "z+"]


# ----------------------------------------------------------------------------------------------------
# Backbones


class SqueezeExcite(nn.Module):
    """Channel attention of IR-SE units: global pool -> bottleneck -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)


class BottleneckIR(nn.Module):
    """ArcFace's improved residual unit (BN-conv-PReLU-conv-BN, stride on the 2nd conv), optionally with SE."""

    def __init__(self, in_channels: int, depth: int, stride: int, se: bool):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        self.res_layer = nn.Sequential(*layers, *([SqueezeExcite(depth)] if se else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def parse_backbone(backbone: str, units: tuple[int, ...] | None = None) -> tuple[str, tuple[int, ...]]:
    """'ir_se50' -> ('ir_se', (3, 4, 14, 3)): the kind and units per stage. The official choices are ir / ir_se with
    50, 100 or 152 layers, or resnet34; a plain 'ir' / 'ir_se' takes its `units` (four stage lengths) as given."""
    match = re.fullmatch(r"(ir_se|ir|resnet)(\d*)", backbone)
    if match and not match[2] and match[1] != "resnet" and units is not None and len(units) == 4:
        return match[1], tuple(units)
    depths = {34: RESNET34_UNITS} if match and match[1] == "resnet" else IR_UNITS
    if not match or not match[2] or int(match[2]) not in depths or units not in (None, depths[int(match[2])]):
        raise ValueError(f"backbone must be ir50, ir_se50, ir100, ir_se100, ir152, ir_se152, resnet34, or ir / ir_se "
                         f"with four stage lengths as units: {backbone!r}, units {units}")
    return match[1], depths[int(match[2])]


class PyramidBackbone(nn.Module):
    """Builds a backbone in the official attribute names and reads it out as the pSp feature pyramid."""

    needs_query = False  # True for encoders whose forward also takes per-style queries (Style Transformer)

    def _build_backbone(self, backbone: str, in_channels: int, widths: tuple[int, ...] = STAGE_WIDTHS,
                        units: tuple[int, ...] | None = None) -> None:
        kind, counts = parse_backbone(backbone, units)
        self.backbone, self.widths = backbone, tuple(widths)
        units: list[nn.Module] = []
        if kind == "resnet":  # ReStyle's ResNet-34: torchvision blocks under its own 7x7 stride-2 stem
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.PReLU(64)
            in_ch = 64
            for stage, (n, width) in enumerate(zip(counts, widths, strict=True)):
                for i in range(n):
                    stride = 2 if stage > 0 and i == 0 else 1
                    down = None
                    if stride != 1 or in_ch != width:
                        down = nn.Sequential(nn.Conv2d(in_ch, width, 1, stride, bias=False), nn.BatchNorm2d(width))
                    units.append(BasicBlock(in_ch, width, stride, down))
                    in_ch = width
        else:
            in_ch = widths[0]
            self.input_layer = nn.Sequential(
                nn.Conv2d(in_channels, in_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(in_ch), nn.PReLU(in_ch)
            )
            for n, width in zip(counts, widths, strict=True):
                for i in range(n):
                    units.append(BottleneckIR(in_ch, width, 2 if i == 0 else 1, se=kind == "ir_se"))
                    in_ch = width
        self.body = nn.Sequential(*units)
        ends = [sum(counts[: s + 1]) - 1 for s in range(4)]
        self.taps = tuple(ends[1:])  # ends of stages 2, 3, 4 (6, 20, 23 for IR-50)

    def _build_laterals(self) -> None:
        self.latlayer1 = nn.Conv2d(self.widths[2], self.widths[3], 1)
        self.latlayer2 = nn.Conv2d(self.widths[1], self.widths[3], 1)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "input_layer"):
            return self.input_layer(x)
        return self.relu(self.bn1(self.conv1(x)))

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image -> (coarse, medium, fine) 512-channel maps at 1/16, 1/8 and 1/4 of the input size."""
        x = self.stem(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps.append(x)
        c1, c2, c3 = taps
        p2 = upsample_add(c3, self.latlayer1(c2))
        p1 = upsample_add(p2, self.latlayer2(c1))
        return c3, p2, p1


def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def pyramid_level(style_index: int) -> int:
    """0 (coarse), 1 (medium) or 2 (fine): the pyramid map a style vector is read from."""
    return 0 if style_index < COARSE_STYLES else 1 if style_index < MEDIUM_STYLES else 2


# ----------------------------------------------------------------------------------------------------
# pSp / e4e


class GradualStyleBlock(nn.Module):
    """map2style: stride-2 convs down to 1x1, then an equalised linear layer -> one style vector."""

    def __init__(self, in_channels: int, out_channels: int, spatial: int, style_dim: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, style_dim or out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class GradualStyleEncoder(PyramidBackbone):
    """pSp encoder: image [B, C, S, S] in [-1, 1] -> W+ offsets [B, n_styles, style_dim] (add `latent_avg`).

    The defaults are the official architecture; `widths` (four stage widths), `units` (with a plain 'ir' / 'ir_se'
    backbone) and `head_width` (the map2style convs) shrink it, e.g. for a 128 px generator on a 2-core CPU.
    """

    def __init__(self, n_styles: int = 18, backbone: str = "ir_se50", in_channels: int = 3, input_size: int = 256,
                 widths: tuple[int, ...] = STAGE_WIDTHS, units: tuple[int, ...] | None = None, head_width: int = 512,
                 style_dim: int = 512):
        super().__init__()
        if input_size % 64 or input_size & (input_size - 1):
            raise ValueError(f"input_size must be a power of two >= 64, got {input_size}")
        self.n_styles, self.input_size = n_styles, input_size
        self._build_backbone(backbone, in_channels, widths, units)
        spatial = (input_size // 16, input_size // 8, input_size // 4)
        self.styles = nn.ModuleList(GradualStyleBlock(widths[3], head_width, spatial[pyramid_level(i)], style_dim)
                                    for i in range(n_styles))
        self._build_laterals()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.pyramid(x)
        return torch.stack([head(levels[pyramid_level(i)]) for i, head in enumerate(self.styles)], 1)


class Encoder4Editing(GradualStyleEncoder):
    """e4e: a single w0 from the coarse map, repeated over all layers, plus deltas for layers 1..stage.

    `progressive_stage` (official `ProgressiveStage` value) is how many deltas are on: 0 gives w0 only,
    `n_styles - 1` or more (the default, official `Inference`) all of them.
    """

    def __init__(self, n_styles: int = 18, backbone: str = "ir_se50", in_channels: int = 3, input_size: int = 256,
                 **widths):
        super().__init__(n_styles, backbone, in_channels, input_size, **widths)
        self.progressive_stage = n_styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.pyramid(x)
        w0 = self.styles[0](levels[0])
        active = min(self.progressive_stage + 1, self.n_styles)
        deltas = [torch.zeros_like(w0)] + [self.styles[i](levels[pyramid_level(i)]) for i in range(1, active)]
        deltas += [torch.zeros_like(w0)] * (self.n_styles - active)
        return w0.unsqueeze(1) + torch.stack(deltas, 1)


class LatentDiscriminator(nn.Module):
    """e4e's latent discriminator: an MLP scoring whether a w came from the mapping network (real) or an encoder."""

    def __init__(self, style_dim: int = 512, n_layers: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_layers - 1):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        self.mlp = nn.Sequential(*layers, nn.Linear(style_dim, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.mlp(w)


# ----------------------------------------------------------------------------------------------------
# Encoder + decoder, as the official checkpoints ship them


class EncoderModel(nn.Module):
    """An encoder, its StyleGAN2 decoder and the average latent its codes are relative to.

    `encode(images)` gives the codes the official `pSp.forward` feeds the decoder (offsets + `latent_avg`),
    in W+ — or in Z+ for DualStyleGAN's encoder (`latent_space="z+"`), which the decoder maps layer by layer.
    Encoders with `needs_query` (the Style Transformer) get their queries from the decoder's mapping network.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Generator,
        latent_avg: torch.Tensor | None = None,
        latent_space: LatentSpace = "w+",
    ):
        super().__init__()
        self.encoder, self.decoder, self.latent_space = encoder, decoder, latent_space
        if latent_avg is not None:  # stored as [D], [1, D] or [n_styles, D]; kept as [n_styles, D]
            latent_avg = latent_avg.float().reshape(-1, latent_avg.shape[-1]).expand(encoder.n_styles, -1).clone()
        self.register_buffer("latent_avg", latent_avg, persistent=False)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, S, S] in [-1, 1] at the encoder's input size -> codes [B, n_styles, D]."""
        if self.encoder.needs_query:
            codes = self.encoder(images, self.encoder.query(self.decoder.style, images.shape[0]))
        else:
            codes = self.encoder(images)
        return codes if self.latent_avg is None else codes + self.latent_avg

    def to_wplus(self, codes: torch.Tensor) -> torch.Tensor:
        if self.latent_space == "w+":
            return codes
        return self.decoder.map_zplus(codes)

    def forward(
        self, images: torch.Tensor, resize: bool = True, randomize_noise: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct: images -> (decoded images, pooled to 256 if `resize`; codes as `encode` gives them).

        Unlike the official `pSp.forward` (random noise by default), the decoder's fixed noise maps are used
        unless `randomize_noise`, so a reconstruction is reproducible.
        """
        codes = self.encode(images)
        out = self.decoder.synthesis(self.to_wplus(codes), noise_mode="random" if randomize_noise else "const")
        return (F.adaptive_avg_pool2d(out, 256) if resize else out), codes
