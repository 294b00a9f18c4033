"""Optimisation inversion into W or W+: the StyleGAN2 projector (stylegan2-ada `projector.py`, as PTI uses it), batched.

Also the pieces every optimisation in `core.inversion` shares: the Adam loop with progress and cancellation
(`run_adam`), LPIPS against fixed targets (`TargetLPIPS`), the generator's latent statistics and `as_wplus`.
The shared generator is never touched: the projector optimises a latent and its own noise maps, which
`G.synthesis(noise=...)` takes as inputs, on a frozen copy of G.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Literal

import lpips
import torch
import torch.nn.functional as F
from torch import nn

from core.inversion.result import InversionResult
from core.measures import get_lpips
from core.nets.stylegan2 import Generator

Progress = Callable[[int, int, dict[str, float]], "bool | None"]
"""progress(step, total, losses): called after every step; returning False stops early (raising aborts)."""
Space = Literal["w", "w+"]


# ----------------------------------------------------------------------------------------------------
# Shared pieces


def as_wplus(ws: torch.Tensor, n_latent: int) -> torch.Tensor:
    """W [N, D] -> W+ [N, n_latent, D] (a view); W+ passes through."""
    return ws.unsqueeze(1).expand(-1, n_latent, -1) if ws.ndim == 2 else ws


def frozen_copy(G: Generator) -> Generator:
    """A private eval-mode copy of G without gradients, so no optimisation ever writes into the shared one."""
    return copy.deepcopy(G).eval().requires_grad_(False)


def device_of(G: nn.Module) -> torch.device:
    return next(G.parameters()).device


@torch.no_grad()
def w_statistics(G: Generator, samples: int = 10_000, seed: int = 123) -> tuple[torch.Tensor, float]:
    """(w_avg [1, D], w_std) of f(z) from seeded samples: the projector's start point and latent-noise scale.

    w_std is the root mean squared distance of a sample from the mean (over all D dimensions together).
    """
    z = torch.randn(samples, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(device_of(G))
    w = G.style(z)
    w_avg = w.mean(0, keepdim=True)
    return w_avg, float((w - w_avg).square().sum(1).mean().sqrt())


def projector_lr(t: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning-rate factor at progress t in [0, 1): linear ramp-up, cosine ramp-down (official projector)."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    return (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / rampup)


def noise_regularisation(noise: Iterable[torch.Tensor]) -> torch.Tensor:
    """Per image [N]: squared 1-pixel autocorrelations of every noise map at every pyramid level down to 8x8.

    The official projector loops over maps and levels (~60 small ops per level at 1024 px); here all maps of one
    size are stacked as channels and the pooled larger maps join them, so each pyramid level is one batched op.
    """
    by_size: dict[int, list[torch.Tensor]] = defaultdict(list)
    for maps in noise:  # [N, 1, H, W]
        by_size[maps.shape[-1]].append(maps)
    total, carried = 0.0, []
    for size in sorted(by_size, reverse=True):
        level = torch.cat(by_size[size] + carried, dim=1)  # [N, maps, H, W]
        total = total + (level * level.roll(1, -1)).mean((-2, -1)).square().sum(1)
        total = total + (level * level.roll(1, -2)).mean((-2, -1)).square().sum(1)
        carried = [F.avg_pool2d(level, 2)] if size > 8 else []
    return total


class TargetLPIPS(nn.Module):
    """LPIPS (v0.1) of images against fixed targets [N, 3, H, W], the targets' features computed once.

    Same value as `core.measures.lpips_distance(images, targets, net)`, one backbone pass cheaper per step.
    """

    def __init__(self, targets: torch.Tensor, net: str = "alex", channels_last: bool = False):
        super().__init__()
        model = get_lpips(net, targets.device)
        if channels_last:  # a private copy: the cached model is shared
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.model, self.channels_last = model, channels_last
        with torch.no_grad():
            self.target_features = self.features(targets)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.model.scaling_layer(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return [lpips.normalize_tensor(f) for f in self.model.net(x)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pairs = zip(self.features(images), self.target_features, self.model.lins, strict=True)
        return sum(lin((f - t).square()).float().mean((1, 2, 3)) for f, t, lin in pairs)


def run_adam(
    loss_fn: Callable[[int], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    param_groups: list[dict],
    steps: int,
    *,
    lr_factor: Callable[[float], float] | None = None,
    after_step: Callable[[], None] | None = None,
    stop_when: Callable[[dict[str, float]], bool] | None = None,
    progress: Progress | None = None,
) -> dict[str, list[float]]:
    """Adam for up to `steps` steps: the one loop behind W/W+ projection, PTI tuning and the joint-pivot ablations.

    loss_fn(step) -> (loss, logged scalars). `stop_when(logged)` is checked before the update, so a stopped run
    keeps the parameters that met the criterion (PTI's early stop). Returns every logged scalar per step.
    Values are read back from the device only when `progress` or `stop_when` needs them.
    """
    on_gpu = all(p.is_cuda for group in param_groups for p in group["params"])
    optimizer = torch.optim.Adam(param_groups, betas=(0.9, 0.999), fused=on_gpu or None)  # one kernel on the GPU
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    history: list[dict[str, torch.Tensor]] = []
    for step in range(steps):
        if lr_factor is not None:
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * lr_factor(step / steps)
        loss, logged = loss_fn(step)
        history.append({"loss": loss.detach(), **{k: v.detach() for k, v in logged.items()}})
        values = {k: float(v) for k, v in history[-1].items()} if (progress or stop_when) else {}
        if stop_when is not None and stop_when(values):
            if progress is not None:
                progress(step + 1, step + 1, values)
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        if progress is not None and progress(step + 1, steps, values) is False:
            break
    return {key: torch.stack([h[key].float() for h in history]).tolist() for key in history[0]} if history else {}


def phase_progress(progress: Progress | None, phase: str, offset: int, total: int) -> Progress | None:
    """Maps one phase's steps onto the whole run's count (PTI: projection, then tuning) and names the phase."""
    if progress is None:
        return None
    return lambda step, steps, values: progress(offset + step, total, {**values, "phase": phase})


def native_autocast(device: torch.device, autocast: torch.dtype | None) -> bool:
    """Whether autocast to this dtype pays here. A CPU without oneDNN's bf16 kernels (AVX2 only, no AVX-512)
    emulates bf16 convolutions ~50x slower than fp32 (23.6 s against 0.41 s per face128 step on a 2-core AMD EPYC):
    fp32 there."""
    if autocast is None:
        return False
    return device.type != "cpu" or autocast != torch.bfloat16 or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def speed_context(device: torch.device, autocast: torch.dtype | None):
    return torch.autocast(device.type, dtype=autocast) if native_autocast(device, autocast) else nullcontext()


def maybe_compile(fn: Callable, compile: bool | str) -> Callable:
    """`compile`: False, True (torch.compile's default mode) or a mode name. "reduce-overhead" replays the forward
    and backward as CUDA graphs (a step at batch 1 is launch-bound); a replay overwrites the previous one's outputs,
    so every call marks a new step."""
    if not compile:
        return fn
    mode = compile if isinstance(compile, str) else "default"
    compiled = torch.compile(fn, dynamic=False, mode=mode)
    if mode not in ("reduce-overhead", "max-autotune"):
        return compiled

    def one_step(*args: object) -> object:
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args)

    return one_step


# ----------------------------------------------------------------------------------------------------
# The projector


def fit_latents(
    G: Generator,
    targets: torch.Tensor,
    *,
    space: Space = "w",
    steps: int = 1000,
    lr: float = 0.01,
    w_avg_samples: int = 10_000,
    noise_factor: float = 0.05,
    noise_ramp: float = 0.75,
    lr_rampup: float = 0.05,
    lr_rampdown: float = 0.25,
    noise_weight: float = 1e5,
    lpips_net: str = "vgg",
    seed: int = 0,
    progress: Progress | None = None,
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
    compile: bool | str = False,
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, list[float]]]:
    """Fit a latent and per-layer noise maps to each target [N, 3, H, W] in [-1, 1] (each image independently).

    Loss: LPIPS (`lpips_net`: the official VGG, or AlexNet, ~3x cheaper) on images area-downsampled to 256 px when
    larger + noise_weight x noise regularisation.
    The latent starts at w_avg and is jittered by w_std * noise_factor * (1 - t / noise_ramp)^2 during the first
    noise_ramp of the run; noise maps start random and are renormalised after every step. Each image of a batch gets
    the random values a batch-1 run draws, so it ends where it would alone. Returns
    (ws [N, D] or [N, n_latent, D], noise maps [N, 1, h, w] per layer, per-step losses).
    """
    G = frozen_copy(G)
    device = device_of(G)
    targets = targets.to(device, torch.float32)
    n = targets.shape[0]
    w_avg, w_std = w_statistics(G, w_avg_samples)
    rng = torch.Generator(device).manual_seed(seed)
    start = w_avg.expand(n, -1) if space == "w" else w_avg.unsqueeze(1).expand(n, G.n_latent, -1)
    ws = start.clone().requires_grad_(True)
    # every image gets the random draws of a batch-1 run: a batch inverts each photo as it would be alone
    noise = [
        torch.randn(1, 1, *m.shape[-2:], generator=rng, device=device).repeat(n, 1, 1, 1).requires_grad_(True)
        for m in G.noise_maps("const")
    ]

    def downsample(images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(images, size=(256, 256), mode="area") if images.shape[-1] > 256 else images

    lpips_target = TargetLPIPS(downsample(targets), lpips_net, channels_last=channels_last)

    def forward(latent: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with speed_context(device, autocast):
            images = G.synthesis(as_wplus(latent, G.n_latent), noise=maps)
            return lpips_target(downsample(images).float()), noise_regularisation(maps)

    forward = maybe_compile(forward, compile)

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = step / steps
        jitter = w_std * noise_factor * max(0.0, 1.0 - t / noise_ramp) ** 2
        draw = torch.randn(1, *ws.shape[1:], generator=rng, device=device)
        distance, regulariser = forward(ws + jitter * draw, noise)
        loss = (distance + noise_weight * regulariser).sum()
        return loss, {"lpips": distance.mean(), "noise_reg": regulariser.mean()}

    @torch.no_grad()
    def normalise_noise() -> None:
        for maps in noise:
            maps -= maps.mean((1, 2, 3), keepdim=True)
            maps *= maps.square().mean((1, 2, 3), keepdim=True).rsqrt()

    losses = run_adam(
        loss_fn,
        [{"params": [ws, *noise], "lr": lr}],
        steps,
        lr_factor=lambda t: projector_lr(t, lr_rampup, lr_rampdown),
        after_step=normalise_noise,
        progress=progress,
    )
    return ws.detach(), [maps.detach() for maps in noise], losses


def project(
    G: Generator, targets: torch.Tensor, *, space: Space = "w", steps: int = 1000, progress: Progress | None = None,
    **options,
) -> InversionResult:
    """W or W+ inversion of targets [N, 3, H, W] in [-1, 1] (options: see `fit_latents`); G is left untouched."""
    started = time.perf_counter()
    ws, noise, losses = fit_latents(G, targets, space=space, steps=steps, **options,
                                    progress=phase_progress(progress, "project", 0, steps))
    seconds = time.perf_counter() - started
    return InversionResult.create(
        space, G, targets, pivot=ws, noise=noise, losses={"project": losses},
        timings={"project": seconds, "total": seconds}, options={"space": space, "steps": steps, **options},
    )
