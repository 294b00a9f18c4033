"""The FIR filter of StyleGAN2's up/down-sampling (`upfirdn2d` with [1, 3, 3, 1], pad (1, 1)), four ways.

    python -m benchmarks.fir_speed                 # CPU, fp32
    python -m benchmarks.fir_speed --device cuda   # GPU, fp32 and bf16

The H100 profile of training (benchmarks/README.md) put most kernel time in cuDNN's depthwise convolutions of this
filter, and more in their double backward (R1, path length). This times one filter call at the training shapes of
the official 128 px config (batch 32) as: "grouped" (the current `core.nets.ops.upfirdn2d`: one conv, groups =
channels), "folded" (channels folded into the batch: one single-channel conv), "separable" (folded, two 1-D
convs) and "shifts" (weighted sums of shifted slices: elementwise only). Each is checked against "grouped", then
timed forward + backward and forward + gradient with create_graph + backward (the double backward of R1).
On this project's 2-core CPU (batch 1, one thread, 2026-11-23) "grouped" wins forward + backward up to 64 px
(folded / separable 9-30x slower, shifts 1.7-2.5x), "shifts" wins at 128 px and in the double backward up to 32 px
(23 against 81 ms at 512 x 16²). On the GPU the trainer now folds the blurs of its up / down-sampling convs into
the conv weights (`core.nets.stylegan2.FOLD_FILTERS`, benchmarks/README.md); this table still decides how the
remaining filters (ToRGB's upsampling of the skip image, and every filter on the CPU) are computed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.common import machine, timed
from core.nets.ops import make_kernel, upfirdn2d

TAPS = (1.0, 3.0, 3.0, 1.0)
SHAPES = [(32, 512, 16), (32, 512, 32), (32, 256, 64), (32, 128, 128)]  # G after each 2x up; D before each down


def folded(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    kernel = make_kernel(TAPS).flip([0, 1]).to(x)
    y = F.conv2d(F.pad(x.reshape(n * c, 1, h, w), [1, 1, 1, 1]), kernel[None, None])
    return y.reshape(n, c, *y.shape[-2:])


def separable(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    taps = torch.tensor(TAPS).flip(0).to(x) / sum(TAPS)
    y = F.conv2d(F.pad(x.reshape(n * c, 1, h, w), [1, 1, 1, 1]), taps.view(1, 1, 1, -1))
    y = F.conv2d(y, taps.view(1, 1, -1, 1))
    return y.reshape(n, c, *y.shape[-2:])


def shifts(x: torch.Tensor) -> torch.Tensor:
    taps = [t / sum(TAPS) for t in TAPS]
    x = F.pad(x, [1, 1, 1, 1])
    width, height = x.shape[-1] - 3, x.shape[-2] - 3
    x = sum(t * x[..., i:i + width] for i, t in enumerate(taps))
    return sum(t * x[..., i:i + height, :] for i, t in enumerate(taps))


VARIANTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "grouped": lambda x: upfirdn2d(x, make_kernel(TAPS).to(x.device), pad=(1, 1)),
    "folded": folded,
    "separable": separable,
    "shifts": shifts,
}


def backward(fn: Callable, x: torch.Tensor) -> Callable[[], None]:
    return lambda: fn(x).square().sum().backward()


def double_backward(fn: Callable, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        (grad,) = torch.autograd.grad(fn(x).square().sum(), x, create_graph=True)
        grad.square().sum().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 3 on CPU, 20 on GPU)")
    parser.add_argument("--batch", type=int, default=None, help="override the batch of the shapes (CPU: 4)")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    repeats = args.repeats or (20 if gpu else 3)
    batch = args.batch or (32 if gpu else 4)
    print(f"machine: {machine()}\n")
    print("| shape (N, C, H) | dtype | variant | fwd + bwd ms | fwd + grad + bwd (R1) ms |")
    print("|---|---|---|---|---|")
    for _, channels, size in SHAPES:
        for dtype in [torch.float32, torch.bfloat16] if gpu else [torch.float32]:
            x = torch.randn(batch, channels, size, size, device=args.device, dtype=dtype, requires_grad=True)
            reference = VARIANTS["grouped"](x).float()
            for name, fn in VARIANTS.items():
                error = (fn(x).float() - reference).abs().max().item()
                if error > (1e-2 if dtype == torch.bfloat16 else 1e-4):
                    raise AssertionError(f"{name} differs from grouped by {error}")
                once = timed(backward(fn, x), args.device, repeats=repeats)[0]
                twice = timed(double_backward(fn, x), args.device, repeats=repeats)[0]
                print(f"| ({batch}, {channels}, {size}) | {str(dtype)[6:]} | {name} | {once * 1e3:.2f} | "
                      f"{twice * 1e3:.2f} |", flush=True)


if __name__ == "__main__":
    main()
