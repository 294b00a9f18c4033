"""StyleGAN2 generator and discriminator, pure PyTorch, in rosinality's state-dict layout.

The module tree (and so every state-dict key) is rosinality/stylegan2-pytorch's `model.py`: its checkpoints
(and the decoders inside e4e, pSp, ReStyle, HyperStyle, Style Transformer and DualStyleGAN) load with
`load_state_dict(strict=True)`; NVIDIA stylegan2-ada pickles are converted into it by `core.checkpoints`.
Widths follow StyleGAN2-ADA: `channels(res) = min(channel_base // res, channel_max)`, so the official FFHQ
config-f (channel_base=32768, channel_max=512, i.e. rosinality's channel_multiplier=2) and a small embedded
model are the same class.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.nets.ops import fir_full_conv, fused_leaky_relu, make_kernel, upfirdn2d

NoiseMode = Literal["const", "random", "none"]

# The blur of every up / down-sampling conv can be folded into the conv's weights (`ops.fir_full_conv`): the same
# maths as a 6 x 6 dense kernel instead of a 3 x 3 conv plus a depthwise filter pass. On the GPU that is faster
# (tensor cores take the extra multiply-adds; cuDNN's depthwise convs and their double backward are slow); on the
# CPU the separate filter is cheaper. None: fold on CUDA only; True / False force it (benchmarks, tests).
FOLD_FILTERS: bool | None = None


def as_wplus(ws: torch.Tensor, n_latent: int) -> torch.Tensor:
    """W [N, D] -> W+ [N, n_latent, D] (a view); W+ passes through."""
    return ws.unsqueeze(1).expand(-1, n_latent, -1) if ws.ndim == 2 else ws


def filters_folded(x: torch.Tensor) -> bool:
    return x.is_cuda if FOLD_FILTERS is None else FOLD_FILTERS


def channel_widths(size: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature-map width at every resolution 4..size."""
    return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(size)) + 1)}


# ----------------------------------------------------------------------------------------------------
# Layers with equalised learning rate


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer whose weights are scaled at run time (equalised lr); `lr_mul` slows the mapping net."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.factor, self.pad = factor, ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


# ----------------------------------------------------------------------------------------------------
# Synthesis layers


class ModulatedConv2d(nn.Module):
    """Conv whose input channels are scaled by a style and whose outputs are demodulated.

    Two equivalent evaluations: `fused` folds the style into per-sample weights (a grouped conv, best at
    batch 1 and for inference); otherwise the activations are scaled around one shared conv (NVIDIA's
    training path, cheaper for weight gradients at large batch).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
            # cropping the folded transposed conv by this much on each side gives the blurred output's size
            self.folded_padding = len(blur_kernel) - 1 - self.blur.pad[0] if p % 2 == 0 else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)

    # None: fused at batch 1 or without grad, else the shared-conv path -- also for a frozen generator in eval mode
    # that gradients pass through (encoder training): as fast there (430 vs 443 img/s at batch 64 on an H200,
    # benchmarks/encoder_train_speed.py) in 16 % less memory
    fused: bool | None = None

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        style = self.modulation(style)
        fused = self.fused
        if fused is None:
            fused = batch == 1 or not torch.is_grad_enabled()
        weight = self.scale * self.weight * style.view(batch, 1, -1, 1, 1)  # [B, O, I, k, k]
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8) if self.demodulate else None
        k = self.kernel_size
        fold = self.upsample and self.folded_padding is not None and filters_folded(x)
        if fused:
            if demod is not None:
                weight = weight * demod.view(batch, -1, 1, 1, 1)
            x = x.reshape(1, batch * self.in_channels, *x.shape[2:])
            if self.upsample:
                weight = weight.transpose(1, 2).reshape(batch * self.in_channels, self.out_channels, k, k)
                out = self.conv_up(x, weight, fold, groups=batch)
            else:
                weight = weight.reshape(batch * self.out_channels, self.in_channels, k, k)
                out = F.conv2d(x, weight.to(x.dtype), padding=self.padding, groups=batch)
            out = out.view(batch, self.out_channels, *out.shape[2:])
        else:
            x = x * style.view(batch, -1, 1, 1).to(x.dtype)
            shared = self.scale * self.weight[0]
            if self.upsample:
                out = self.conv_up(x, shared.transpose(0, 1), fold)
            else:
                out = F.conv2d(x, shared.to(x.dtype), padding=self.padding)
            if demod is not None:
                out = out * demod.view(batch, -1, 1, 1).to(out.dtype)
        return self.blur(out) if self.upsample and not fold else out

    def conv_up(self, x: torch.Tensor, weight: torch.Tensor, fold: bool, groups: int = 1) -> torch.Tensor:
        """2x transposed conv; with `fold`, the blur that follows it is in the kernel (and cropped by padding)."""
        if fold:
            weight = fir_full_conv(weight, self.blur.kernel)
        padding = self.folded_padding if fold else 0
        return F.conv_transpose2d(x, weight.to(x.dtype), stride=2, padding=padding, groups=groups)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        out = self.activate(self.noise(self.conv(x, style), noise))
        if self.conv_clamp is not None:  # NVIDIA's conv_clamp (times the lrelu gain); off for rosinality models
            out = out.clamp(-self.conv_clamp * math.sqrt(2), self.conv_clamp * math.sqrt(2))
        return out


class ToRGB(nn.Module):
    def __init__(
        self,
        in_channels: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class NoiseBuffers(nn.Module):
    """Holds the fixed per-layer noise maps (`noises.noise_i`), as rosinality checkpoints store them."""


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network f(z) -> w, synthesis network g(w+) -> image in [-1, 1].

    `forward` keeps rosinality's signature (what official encoder code calls); `mapping` and `synthesis`
    are the two halves for inversion code, which works in W / W+ directly.
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_base: int = 32768,
        channel_max: int = 512,
        lr_mlp: float = 0.01,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        self.config = dict(
            size=size,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channel_base=channel_base,
            channel_max=channel_max,
            lr_mlp=lr_mlp,
            blur_kernel=list(blur_kernel),
            conv_clamp=conv_clamp,
        )
        self.size, self.style_dim = size, style_dim
        self.channels = channel_widths(size, channel_base, channel_max)
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(
            self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel, conv_clamp=conv_clamp
        )
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False, conv_clamp=conv_clamp)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = NoiseBuffers()
        for layer in range(self.num_layers):
            res = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, res, res))
        in_ch = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2**i]
            self.convs.append(
                StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel, conv_clamp=conv_clamp)
            )
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel, conv_clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel, conv_clamp=conv_clamp))
            in_ch = out_ch
        # Mean of f(z); filled by checkpoint loaders / training (`latent_avg` in rosinality checkpoints,
        # `mapping.w_avg` in NVIDIA ones). Not in the state dict, so official layouts load strictly.
        self.register_buffer("w_avg", torch.zeros(style_dim), persistent=False)

    # -- halves ------------------------------------------------------------------------------------

    def map_zplus(self, z_plus: torch.Tensor) -> torch.Tensor:
        """Z+ [B, n_latent, D] -> W+: the mapping network applied to each layer's z (DualStyleGAN's latent space)."""
        return self.style(z_plus.flatten(0, 1)).view_as(z_plus)

    def mapping(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        w_avg: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z [B, style_dim] -> w [B, style_dim], or W+ [B, n_latent, style_dim] when truncation is cut off."""
        w = self.style(z)
        if truncation_psi == 1:
            return w
        w_avg = self.w_avg if w_avg is None else w_avg.reshape(-1)
        if truncation_cutoff is None:
            return w_avg + truncation_psi * (w - w_avg)
        ws = w.unsqueeze(1).repeat(1, self.n_latent, 1)
        ws[:, :truncation_cutoff] = w_avg + truncation_psi * (ws[:, :truncation_cutoff] - w_avg)
        return ws

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Estimate E[f(z)] from `n` seeded samples -> [1, style_dim]."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=g).to(self.w_avg.device)
        return self.style(z).mean(0, keepdim=True)

    def synthesis(
        self, ws: torch.Tensor, noise_mode: NoiseMode = "const", noise: Sequence[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """W ([B, D], broadcast) or W+ ([B, n_latent, D]) -> image [B, 3, size, size].

        noise_mode: 'const' uses the stored `noises` buffers, 'random' draws fresh noise, 'none' zeros;
        an explicit `noise` list (one map per layer, None = random) overrides it.
        """
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).repeat(1, self.n_latent, 1)
        if ws.shape[1] != self.n_latent:
            raise ValueError(f"expected {self.n_latent} style vectors, got W+ of shape {tuple(ws.shape)}")
        if noise is None:
            noise = self.noise_maps(noise_mode, ws.shape[0], ws.device)
        out = self.conv1(self.input(ws.shape[0]), ws[:, 0], noise[0])
        skip = self.to_rgb1(out, ws[:, 1])
        i = 1
        for conv_up, conv, noise_up, noise_1, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs, strict=True
        ):
            out = conv_up(out, ws[:, i], noise_up)
            out = conv(out, ws[:, i + 1], noise_1)
            skip = to_rgb(out, ws[:, i + 2], skip)
            i += 2
        return skip

    def noise_maps(self, mode: NoiseMode, batch: int = 1, device: torch.device | None = None) -> list:
        """Per-layer noise for `synthesis`: the stored maps, zeros, or None (= fresh random)."""
        stored = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if mode == "const":
            return stored
        if mode == "none":
            return [torch.zeros_like(n) for n in stored]
        if mode == "random":
            return [None] * self.num_layers
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {mode!r}")

    # -- rosinality-compatible call ----------------------------------------------------------------

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rosinality's `Generator.forward`: a list of one (or two, for style mixing) z / w / W+ batches."""
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation < 1:
            latent_avg = self.w_avg if truncation_latent is None else truncation_latent
            styles = [latent_avg + truncation * (s - latent_avg) for s in styles]
        if len(styles) < 2:
            latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat(
                [
                    styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                    styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1),
                ],
                1,
            )
        image = self.synthesis(latent, noise_mode="random" if randomize_noise else "const", noise=noise)
        return image, (latent if return_latents else None)


# ----------------------------------------------------------------------------------------------------
# Discriminator


class ConvLayer(nn.Sequential):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        stride, padding = 1, kernel_size // 2
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        layers.append(
            EqualConv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blur = self[0]
        if not (self.downsample and blur.pad[0] == blur.pad[1] and filters_folded(x)):
            return super().forward(x)
        conv = self[1]  # blur, then a strided conv == one strided conv with the blur folded into its kernel
        weight = fir_full_conv(conv.weight * conv.scale, blur.kernel.flip([0, 1]))
        x = F.conv2d(x, weight, conv.bias, stride=2, padding=blur.pad[0])
        return self[2](x) if len(self) > 2 else x


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, activate=False, bias=False, blur_kernel=blur_kernel
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator with minibatch standard deviation (rosinality layout)."""

    def __init__(
        self,
        size: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        stddev_group: int = 4,
    ):
        super().__init__()
        self.config = dict(
            size=size,
            channel_base=channel_base,
            channel_max=channel_max,
            blur_kernel=list(blur_kernel),
            stddev_group=stddev_group,
        )
        channels = channel_widths(size, channel_base, channel_max)
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        in_ch = channels[size]
        for i in range(int(math.log2(size)), 2, -1):
            convs.append(ResBlock(in_ch, channels[2 ** (i - 1)], blur_kernel))
            in_ch = channels[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = stddev_group, 1
        self.final_conv = ConvLayer(in_ch + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 16, channels[4], activation=True), EqualLinear(channels[4], 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        batch, channel, height, width = out.shape
        group = min(batch, self.stddev_group)
        if batch % group:
            raise ValueError(f"batch {batch} must be divisible by the minibatch-stddev group {group}")
        stddev = out.reshape(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, stddev.repeat(group, 1, height, width)], 1)
        return self.final_linear(self.final_conv(out).reshape(batch, -1))
