"""StyleGAN2's low-level ops in plain PyTorch: one code path for CPU and GPU, no compiled extensions.

The official repos JIT-compile CUDA kernels for `upfirdn2d` and `fused_bias_act`; on new torch those builds
break. Each op here is the reference maths written with standard torch calls, arranged so the common cases
(2x up / down with a 4-tap filter) are a single (transposed) convolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def make_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable FIR taps -> normalised 2-D kernel (sums to 1), as rosinality's `make_kernel`."""
    k = torch.tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = SQRT2
) -> torch.Tensor:
    """Bias add + leaky ReLU + gain, the `fused_bias_act` of StyleGAN2."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


def fir_full_conv(weight: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Full 2-D convolution of every trailing k x k slice of `weight` with `kernel` (size k + taps - 1).

    Two linear shift-invariant steps compose into one: a conv followed (or preceded) by an FIR filter is a
    single conv with this kernel, which lets `stylegan2` replace its depthwise blur passes by denser convs.
    Evaluated as one matmul by the map's matrix (the full convolution of each of the k x k unit kernels): a
    conv over hundreds of thousands of single-channel k x k "images" is one of cuDNN's slowest cases.
    """
    *lead, kh, kw = weight.shape
    fh, fw = kernel.shape
    units = torch.eye(kh * kw, dtype=kernel.dtype, device=kernel.device).reshape(-1, 1, kh, kw)
    matrix = F.conv2d(F.pad(units, [fw - 1, fw - 1, fh - 1, fh - 1]), kernel.flip([0, 1])[None, None])
    out = weight.reshape(-1, kh * kw) @ matrix.reshape(kh * kw, -1).to(weight.dtype)
    return out.reshape(*lead, kh + fh - 1, kw + fw - 1)


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative crops), FIR filter, downsample; per channel.

    Same maths as the official `upfirdn2d` (true convolution, i.e. the kernel is flipped), with the
    zero insertion folded into a strided transposed convolution.
    """
    channels = x.shape[1]
    kh, kw = kernel.shape
    weight = kernel.to(x.dtype)[None, None].expand(channels, 1, kh, kw)
    p0, p1 = pad
    if up > 1:
        # conv_transpose2d == zero-insert, pad k-1 on both sides, correlate with the flipped kernel.
        x = F.conv_transpose2d(x, weight, stride=up, groups=channels)
        x = F.pad(x, [p0 - (kw - 1), p1 + up - 1 - (kw - 1), p0 - (kh - 1), p1 + up - 1 - (kh - 1)])
        return x[:, :, ::down, ::down] if down > 1 else x
    x = F.pad(x, [p0, p1, p0, p1])
    return F.conv2d(x, weight.flip([2, 3]), stride=down, groups=channels)


def quantise_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (q int8, scale float16 [out]) with weight ~ q * scale."""
    scale = (weight.flatten(1).abs().amax(1) / 127).clamp_min(1e-12).half()
    q = (weight / scale.float().view(-1, *[1] * (weight.ndim - 1))).round().clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantise_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `quantise_int8` over a state dict: every `name` with a `name.scale` becomes float32 q * scale."""
    tensors = dict(tensors)
    for key in [k for k in tensors if k.endswith(".scale")]:
        scale, name = tensors.pop(key).float(), key[: -len(".scale")]
        q = tensors[name].float()
        tensors[name] = q * scale.view(-1, *[1] * (q.ndim - 1))
    return tensors
