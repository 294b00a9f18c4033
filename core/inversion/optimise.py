"""Optimisation inversion into W or W+: the StyleGAN2 projector (stylegan2-ada `projector.py`, as PTI uses it), batched.

Also the pieces every optimisation in `core.inversion` shares: the Adam loop with progress and cancellation
(`run_adam`), LPIPS against fixed targets (`TargetLPIPS`), the generator's latent statistics.
The shared generator is never touched: the projector optimises a latent and its own noise maps, which
`G.synthesis(noise=...)` takes as inputs, on a frozen copy of G.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Literal

import lpips
import torch
import torch.nn.functional as F
from torch import nn

from core.inversion.result import InversionResult
from core.measures import get_lpips
from core.nets.stylegan2 import Generator, as_wplus
from core.runtime import capture_cuda_graph, maybe_compile, side_stream, speed_context

Progress = Callable[[int, int, dict[str, float]], "bool | None"]
"""progress(step, total, losses): called after every step; returning False stops early (raising aborts)."""
Space = Literal["w", "w+"]
GRAPH_WARMUP_STEPS = 3  # eager steps before a step is captured as a CUDA graph
GRAPH_REPORT_EVERY = 25  # with a graph, losses are read back (progress, early stop) every this many steps


# ----------------------------------------------------------------------------------------------------
# Shared pieces


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


def at_step(table: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Row `step` (a 0-dim device tensor) of a per-step table [steps, ...], kept as [1, ...] and read on the device:
    `table[step]` would read the step back to Python, which a CUDA graph cannot hold."""
    return table.index_select(0, step.view(1))


def run_adam(
    loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    param_groups: list[dict],
    steps: int,
    *,
    lr_factor: Callable[[float], float] | None = None,
    after_step: Callable[[], None] | None = None,
    stop_when: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    progress: Progress | None = None,
    cuda_graph: bool = False,
) -> dict[str, list[float]]:
    """Adam for up to `steps` steps: the one loop behind W/W+ projection, PTI tuning and the joint-pivot ablations.

    loss_fn(step) -> (loss, logged scalars), `step` a 0-dim int64 tensor on the parameters' device: per-step
    schedules are tables indexed with it on the device, so a step needs nothing from Python and, with `cuda_graph`
    on a GPU, the whole step (loss, backward, Adam, `after_step`) is captured once as a CUDA graph and replayed:
    one launch a step instead of hundreds, nothing waiting on Python (with compiled kernels, about half of eager's
    time for 1024 px PTI: benchmarks/README.md, "The whole step as one CUDA graph"). On the CPU the same step runs
    uncaptured.
    `stop_when(logged)` -> bool tensor is checked before the update: from the step it first holds on, the learning
    rate is zero, so a stopped run keeps the parameters that met the criterion (PTI's early stop)
    whether the loop sees it at once or a few replays later. Returns every logged scalar per step, up to the stop.
    Values are read back every step when `progress` or `stop_when` needs them (every `GRAPH_REPORT_EVERY` steps
    with a graph), else once at the end.
    """
    device = param_groups[0]["params"][0].device
    capture = cuda_graph and device.type == "cuda"
    factors = torch.tensor([lr_factor(s / steps) if lr_factor else 1.0 for s in range(max(steps, 1))], device=device)
    base_lrs = [float(group["lr"]) for group in param_groups]
    groups = [{**group, "lr": torch.tensor(lr, device=device)}
              for group, lr in zip(param_groups, base_lrs, strict=True)]
    # fused: one kernel for all parameters; a tensor learning rate, set on the device each step
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999), fused=True, capturable=capture)
    step = torch.zeros((), dtype=torch.long, device=device)
    stopped = torch.zeros((), dtype=torch.bool, device=device)
    log: dict[str, object] = {}  # keys, and rows [steps, keys + 1] on the device (the last column: stopped)

    def one_step() -> None:
        loss, logged = loss_fn(step)
        logged = {"loss": loss.detach(), **{k: v.detach() for k, v in logged.items()}}
        if stop_when is not None:
            stopped.logical_or_(stop_when(logged))
        if not log:
            log.update(keys=list(logged), rows=torch.zeros(max(steps, 1), len(logged) + 1, device=device))
        row = torch.stack([*(v.float().reshape(()) for v in logged.values()), stopped.float()])
        log["rows"].index_copy_(0, step.view(1), row.view(1, -1))
        factor = at_step(factors, step).squeeze(0) * ~stopped
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"].copy_(factor * lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        step.add_(1)

    history: list[list[float]] = []
    report_every = GRAPH_REPORT_EVERY if cuda_graph else 1  # on the CPU too: the late stop is tested there
    watching = progress is not None or stop_when is not None
    done, replay = 0, None
    while done < steps:
        if not capture:
            one_step()
        elif done < GRAPH_WARMUP_STEPS:
            side_stream(one_step)
        else:
            replay = replay or capture_cuda_graph(one_step)
            replay()
        done += 1
        if not (done == steps or (watching and done % report_every == 0)):
            continue
        for values in log["rows"][len(history) : done].tolist():
            history.append(values)
            named = dict(zip(log["keys"], values, strict=False))
            if values[-1]:  # stop_when held: this step made no update
                if progress is not None:
                    progress(len(history), len(history), named)
                steps = done = len(history)
                break
            if progress is not None and progress(len(history), steps, named) is False:
                steps = done = len(history)
                break
    if not history:
        return {}
    return {key: [values[i] for values in history] for i, key in enumerate(log["keys"])}


def phase_progress(progress: Progress | None, phase: str, offset: int, total: int) -> Progress | None:
    """Maps one phase's steps onto the whole run's count (PTI: projection, then tuning) and names the phase."""
    if progress is None:
        return None
    return lambda step, steps, values: progress(offset + step, total, {**values, "phase": phase})


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
    cuda_graph: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, list[float]]]:
    """Fit a latent and per-layer noise maps to each target [N, 3, H, W] in [-1, 1] (each image independently).

    Loss: LPIPS (`lpips_net`: the official VGG, or AlexNet, ~3x cheaper) on images area-downsampled to 256 px when
    larger + noise_weight x noise regularisation.
    The latent starts at w_avg and is jittered by w_std * noise_factor * (1 - t / noise_ramp)^2 during the first
    noise_ramp of the run; noise maps start random and are renormalised after every step. Each image of a batch gets
    the random values a batch-1 run draws, so it ends where it would alone. Speed options: bf16 `autocast`,
    `channels_last`, `compile` (torch.compile; a mode name such as "reduce-overhead" for its CUDA graphs of forward
    and backward), `cuda_graph` (each whole step one CUDA graph, `run_adam`; with compile=True its kernels). Returns
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

    forward = maybe_compile(forward, compile, cuda_graph)

    # the latent's jitter, w_std * noise_factor * (1 - t / noise_ramp)^2 times a fresh draw, for every step at once
    ramp = torch.tensor([max(0.0, 1.0 - s / steps / noise_ramp) ** 2 for s in range(max(steps, 1))], device=device)
    draws = torch.randn(len(ramp), *ws.shape[1:], generator=rng, device=device)
    jitters = w_std * noise_factor * ramp.view(-1, *[1] * (ws.ndim - 1)) * draws

    def loss_fn(step: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        distance, regulariser = forward(ws + at_step(jitters, step), noise)
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
        cuda_graph=cuda_graph,
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
