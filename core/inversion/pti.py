"""Pivotal Tuning Inversion (Roich et al. 2022): fit the generator around a fixed pivot latent of each photo.

One function, `pivotal_tuning`, covers the paper's single-image and multi-ID settings (N photos, one generator,
batched), its locality regularisation (Sec. 3.3) and the pivot ablations of Sec. 4.4 (`PIVOTS`, letters A-F), plus
encoder pivots (any callable image -> latent). The base generator is never modified: a copy is tuned and the
result keeps only its weight delta.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.inversion.optimise import (
    Progress,
    TargetLPIPS,
    at_step,
    device_of,
    fit_latents,
    phase_progress,
    run_adam,
    w_statistics,
)
from core.inversion.result import InversionResult
from core.measures import lpips_distance
from core.nets.stylegan2 import Generator, as_wplus
from core.runtime import maybe_compile, native_autocast, speed_context

# The paper's pivot ablation (Sec. 4.4, Fig. 9): letter -> pivot source.
PIVOTS = {"A": "w", "B": "w+", "C": "mean", "D": "random", "E": "joint-mean", "F": "joint-random"}
Encoder = Callable[[torch.Tensor], torch.Tensor]
PivotSource = str | Encoder | torch.Tensor


@dataclass(frozen=True)
class PTISettings:
    """Every setting of one PTI run: what `pivotal_tuning` runs, what a preset names, what a front door shows as its
    controls' starting values. The defaults are the paper's (its official code's hyperparameters)."""

    pivot: PivotSource = "w"  # PIVOTS' names, an encoder (image -> latent), or a latent tensor
    project_steps: int = 450  # W / W+ pivot projection
    project_lr: float = 0.01
    steps: int = 350  # generator tuning
    lr: float = 3e-4
    l2_weight: float = 1.0
    early_stop: float | None = 0.06  # LPIPS at >= EARLY_STOP_SIZE px; None: run every step
    locality: bool = False  # the paper's regulariser (Sec. 3.3)
    locality_weight: float = 0.1
    locality_l2: float = 0.1
    alpha: float = 30.0
    psi: float = 0.5
    locality_samples: int = 1
    pivot_lr: float = 0.01  # joint pivots (E, F)
    seed: int = 0
    independent: bool = False  # N photos: one generator each, in one batched run (else multi-ID)
    autocast: torch.dtype | None = None
    channels_last: bool = False
    compile: bool | str = False
    cuda_graph: bool = False
    projection: dict = field(default_factory=dict)  # more keywords of the pivot's projection (`fit_latents`)

    def replace(self, **changes: object) -> PTISettings:
        """These settings with `changes`: a field by its name, anything else a keyword of the projection."""
        names = {f.name for f in dataclasses.fields(self)}
        extra = {k: v for k, v in changes.items() if k not in names}
        fields = {k: v for k, v in changes.items() if k in names}
        return dataclasses.replace(self, **fields, projection={**self.projection, **fields.get("projection", {}),
                                                                **extra})


RUN_ONLY = ("pivot", "independent", "projection")  # settings a result's options record otherwise (or not at all)

# Named settings for `invert(G, photo, "pti", preset=...)`; keywords given to `invert` override them. Reconstruction
# and identity were measured on 40 held-out faces by `benchmarks/pti_curves.py`, editability on 25 by
# `benchmarks/pti_editability.py` (benchmarks/README.md, "PTI: does tuning keep W's editability?").
PRESETS: dict[str, PTISettings] = {
    # The paper's: 450 W-projection steps with LPIPS-VGG and noise regularisation, then up to 350 tuning steps at
    # lr 3e-4 (LPIPS-alex + L2), early stop at LPIPS 0.06 scored at >= 256 px.
    "paper": PTISettings(),
    # The CLI's and the app's default on the CPU: a 100-step projection with the cheaper AlexNet LPIPS at 3x the lr,
    # bf16 autocast + channels-last, then <= 100 tuning steps at 3x the paper's lr with the paper's locality
    # regulariser. The lr is the editability lever: at 10x the paper's (3e-3, this preset until session 14) the
    # tuned generator drew the embedded directions' edits at ~0.6 of W's strength; at 1e-3 with locality it draws
    # them about as strongly as the paper's own settings do, at the same reconstruction.
    "fast": PTISettings(project_steps=100, project_lr=0.03, steps=100, lr=1e-3, locality=True,
                        autocast=torch.bfloat16, channels_last=True, projection={"lpips_net": "alex"}),
}


# PTI's early stop compares LPIPS with 0.06 on the paper's 1024 px images; its tables score LPIPS at 256 px. Images
# smaller than this are upsampled to it for the early stop only: at 128 px LPIPS reaches 0.06 after ~25 steps,
# when the reconstruction is often another person (identity 0.41, 30 % "same person" on the 40 faces above).
EARLY_STOP_SIZE = 256


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error on the [-1, 1] scale (PTI's `nn.MSELoss`)."""
    return (a - b).square().flatten(1).mean(1)


def to_scoring_size(images: torch.Tensor) -> torch.Tensor:
    """Images resized (bilinear) to EARLY_STOP_SIZE, where PTI's LPIPS early stop and the paper's tables score."""
    return F.interpolate(images, size=(EARLY_STOP_SIZE, EARLY_STOP_SIZE), mode="bilinear", align_corners=False)


def ball_latents(
    base: Generator, pivot: torch.Tensor, z: torch.Tensor, *, alpha: float = 30.0, psi: float = 0.5
) -> torch.Tensor:
    """W+ latents [N * samples, n_latent, D] at distance alpha from each pivot, towards w_z = f(z) (psi) for each of
    the `samples` codes z [samples, D], the same for every pivot (what each photo's batch-1 run draws).

    As in the official code the distance is taken over the whole W+ tensor, so a W pivot moves alpha/sqrt(n_latent)
    per layer (the setting alpha = 30 was chosen with).
    """
    pivots = as_wplus(pivot, base.n_latent).repeat_interleave(len(z), 0)
    with torch.no_grad():
        w_z = as_wplus(base.mapping(z.repeat(len(pivot), 1), truncation_psi=psi), base.n_latent)
    direction = w_z - pivots
    return pivots + alpha * direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1)


@torch.no_grad()
def locality_drift(
    base: Generator, tuned: Generator, pivot: torch.Tensor, *, alpha: float = 30.0, psi: float = 0.5,
    samples: int = 16, seed: int = 1234,
) -> dict[str, float]:
    """How far the tuned generator moved away from the pivot: mean LPIPS(alex) and MSE between base and tuned images
    of `samples` random latents at distance alpha from each pivot (the paper's locality measure, Fig. 5)."""
    device = device_of(base)
    z = torch.randn(samples, base.style_dim, generator=torch.Generator(device).manual_seed(seed), device=device)
    ws = ball_latents(base, pivot.to(device), z, alpha=alpha, psi=psi)
    original = base.synthesis(ws, noise_mode="none")
    moved = tuned.synthesis(ws, noise_mode="none")
    return {"lpips": float(lpips_distance(moved, original).mean()), "mse": float(_mse(moved, original).mean())}


def encoder_pivot(model: torch.nn.Module, size: int = 256) -> Encoder:
    """An `EncoderModel` (e4e, pSp, Style Transformer: `core.nets.encoders`) as a pivot source: targets are
    area-resized to the encoder's input `size` and encoded to W+ (PTI's official code offers e4e pivots too)."""
    return lambda images: model.to_wplus(model.encode(F.interpolate(images, size=(size, size), mode="area")))


def make_pivot(
    G: Generator, targets: torch.Tensor, source: PivotSource = "w", *, project_steps: int = 450, seed: int = 0,
    progress: Progress | None = None, **projection: object,
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """The starting pivot [N, D] or [N, n_latent, D] for each target, and the projection's losses if any.

    source: a name of `PIVOTS` (or its letter), a callable encoder (targets -> W or W+), or a latent tensor.
    """
    source = PIVOTS.get(source, source) if isinstance(source, str) else source
    n, device = targets.shape[0], device_of(G)
    if isinstance(source, torch.Tensor):
        return source.to(device, torch.float32), {}
    if callable(source):
        with torch.no_grad():
            return source(targets).to(device, torch.float32), {}
    if source in ("w", "w+"):
        ws, _, losses = fit_latents(G, targets, space=source, steps=project_steps, seed=seed, progress=progress,
                                    **projection)
        return ws, losses
    if source in ("mean", "joint-mean"):
        return w_statistics(G)[0].expand(n, -1).clone(), {}
    if source in ("random", "joint-random"):
        z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        with torch.no_grad():
            return G.mapping(z), {}
    raise ValueError(f"unknown pivot source {source!r}; use one of {sorted(PIVOTS.values())}, a letter "
                     f"{sorted(PIVOTS)}, an encoder callable or a latent tensor")


class _Synthesis(torch.nn.Module):
    """G's synthesis as a module call, so that `torch.func.functional_call` can swap in one photo's weights."""

    def __init__(self, G: Generator):
        super().__init__()
        self.G = G

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        return self.G.synthesis(ws, noise=noise)


def per_photo(mask: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    """A per-photo mask [N] shaped to broadcast over stacked weights [N, ...]."""
    return mask.view(-1, *[1] * (stacked.ndim - 1))


class PerPhotoWeights:
    """Independent PTI of N photos in one batched run: every synthesis weight stacked N times ([N, ...], one
    generator per photo), drawn with `torch.vmap` over `functional_call`, which turns each convolution into one
    grouped convolution over the photos (the modulated conv's own batching). Adam is elementwise and the loss a sum
    of per-photo losses, so each photo follows the steps its batch-1 run takes; a photo that meets the early stop is
    frozen (its weights restored after every later step), as its batch-1 run would have stopped there."""

    def __init__(self, G: Generator, n: int):
        self.module = _Synthesis(copy.deepcopy(G).train().requires_grad_(False))
        self.names = [k for k, _ in self.module.named_parameters() if not k.startswith("G.style.")]
        self.base = {k: v.detach() for k, v in self.module.named_parameters() if k in self.names}
        self.params = {k: self.base[k].expand(n, *self.base[k].shape).clone().requires_grad_(True)
                       for k in self.names}
        self.done = torch.zeros(n, dtype=torch.bool, device=next(G.parameters()).device)
        self.kept = {k: v.detach().clone() for k, v in self.params.items()}

    def synthesis(self, latents: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """latents [N, per, n_latent, D] (photo i's drawn by generator i) -> images [N, per, 3, H, W]."""
        def one(params: dict[str, torch.Tensor], ws: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.module, params, (ws, noise))

        return torch.vmap(one)(self.params, latents)

    @torch.no_grad()
    def freeze(self, met: torch.Tensor) -> None:
        """Photos meeting the early stop now keep their current weights (taken before this step's update)."""
        new = met & ~self.done
        for k, p in self.params.items():
            self.kept[k].copy_(torch.where(per_photo(new, p), p.detach(), self.kept[k]))
        self.done |= met

    @torch.no_grad()
    def restore(self) -> None:
        for k, p in self.params.items():
            p.copy_(torch.where(per_photo(self.done, p), self.kept[k], p))

    def delta(self, i: int) -> dict[str, torch.Tensor]:
        """Photo i's weight change, keyed like G's state dict (as `weight_delta`)."""
        return {k.removeprefix("G."): (self.params[k][i].detach().float() - self.base[k].float()).half().cpu()
                for k in self.names if not torch.equal(self.params[k][i], self.base[k])}


def pivotal_tuning(
    G: Generator,
    targets: torch.Tensor,
    settings: PTISettings | None = None,
    *,
    progress: Progress | None = None,
    watch: Callable[[int, torch.Tensor], None] | None = None,
    **changes: object,
) -> InversionResult | list[InversionResult]:
    """PTI of targets [N, 3, H, W] in [-1, 1]: N > 1 tunes one generator for all of them at once (multi-ID), or with
    `independent` one generator per photo in one batched run (`PerPhotoWeights`), returning one result per photo,
    each what its batch-1 run gives (every photo draws the random values its batch-1 run draws).

    Tuning loss per image: LPIPS(alex) + l2_weight * MSE against the target, on G_tuned(pivot) with the stored noise;
    Adam (lr) for up to `steps`, stopping once every image's LPIPS <= early_stop, that LPIPS scored at
    EARLY_STOP_SIZE px at least (smaller images upsampled; None: run all steps; the official multi-ID code has no
    early stop). `locality` adds the paper's regulariser: per image and step,
    `locality_samples` latents w_r at distance alpha from the pivot (towards f(z), psi) and
    locality_weight * (LPIPS + locality_l2 * MSE)(G_orig(w_r), G_tuned(w_r)) with noise off, the paper's
    L_pt + lambda_R L_R. (The official code instead weights LPIPS and L2 by 0.1 each: 0.1 L_LPIPS + 0.1 L2.)
    Joint pivots (E, F) optimise the pivot with Adam at `pivot_lr` alongside the generator. A W/W+ pivot is
    projected for `project_steps` at `project_lr`; extra keywords go to that projection (`fit_latents`).
    When `progress` returns False the run ends there and returns what it has. `watch(step, images)` sees every
    tuning step's reconstruction [N, 3, H, W] (after `step` updates, detached) without extra synthesis: what
    quality-vs-steps curves are drawn from (benchmarks/pti_curves.py). The settings are `settings` (default: the
    paper's, `PTISettings()`) with `changes` (its fields by name; other keywords go to the projection).
    """
    cfg = (settings or PTISettings()).replace(**changes)
    if cfg.cuda_graph and watch is not None:
        raise ValueError("watch reads every step's images in Python: it cannot run inside a CUDA graph")
    started = time.perf_counter()
    device = device_of(G)
    targets = targets.to(device, torch.float32)
    n = targets.shape[0]
    name = PIVOTS.get(cfg.pivot, cfg.pivot) if isinstance(cfg.pivot, str) else cfg.pivot
    projecting = name in ("w", "w+")
    total = (cfg.project_steps if projecting else 0) + cfg.steps
    # the options record what ran: no autocast where the device has no native one
    cfg = dataclasses.replace(cfg, autocast=cfg.autocast if native_autocast(device, cfg.autocast) else None)
    speed = {"autocast": cfg.autocast, "channels_last": cfg.channels_last, "compile": cfg.compile,
             "cuda_graph": cfg.cuda_graph}
    ws, pivot_losses = make_pivot(G, targets, name, project_steps=cfg.project_steps, seed=cfg.seed,
                                  lr=cfg.project_lr, progress=phase_progress(progress, "pivot", 0, total),
                                  **cfg.projection, **speed)
    pivot_seconds = time.perf_counter() - started

    per_photo = PerPhotoWeights(G, n) if cfg.independent else None
    if per_photo is None:
        tuned = copy.deepcopy(G).train().requires_grad_(False)
        weights = [p for key, p in tuned.named_parameters() if not key.startswith("style.")]  # synthesis only
        for p in weights:
            p.requires_grad_(True)
    else:
        weights = list(per_photo.params.values())
    joint = isinstance(name, str) and name.startswith("joint")
    ws = ws.clone().requires_grad_(joint)
    groups = [{"params": weights, "lr": cfg.lr}] + ([{"params": [ws], "lr": cfg.pivot_lr}] if joint else [])

    # each step's locality codes z, drawn for all steps at once (a step draws nothing, so a CUDA graph can hold it)
    rng = torch.Generator(device).manual_seed(cfg.seed)
    ball_z = torch.randn(cfg.steps if cfg.locality else 0, cfg.locality_samples, G.style_dim, generator=rng,
                         device=device)
    lpips_alex = TargetLPIPS(targets, "alex", channels_last=cfg.channels_last)
    small = cfg.early_stop is not None and G.size < EARLY_STOP_SIZE
    lpips_stop = TargetLPIPS(to_scoring_size(targets), "alex") if small else None
    k = cfg.locality_samples if cfg.locality else 0
    maps = G.noise_maps("const")

    def synthesis(latents: torch.Tensor) -> torch.Tensor:
        """The pivots' [N] then the ball latents' [N * k] images: one tuned generator, or each photo's own."""
        if per_photo is None:
            noise = [torch.cat([m.expand(n, -1, -1, -1), m.new_zeros(n * k, *m.shape[1:])]) for m in maps]
            return tuned.synthesis(latents, noise=noise)
        noise = [torch.cat([m, m.new_zeros(k, *m.shape[1:])]) for m in maps]
        own = torch.cat([latents[:n, None], latents[n:].view(n, k, *latents.shape[1:])], 1)  # [N, 1 + k, ...]
        images = per_photo.synthesis(own, noise)
        return torch.cat([images[:, 0], images[:, 1:].flatten(0, 1)])

    def forward(latents: torch.Tensor, ball: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The whole step's drawing, one function for `compile`: the pivots' (and the ball latents') images by the
        tuned weights, and the ball latents' images by the original generator (inside, so a CUDA graph holds it)."""
        if ball is not None:
            latents = torch.cat([latents, ball])
        with speed_context(device, cfg.autocast):
            images = synthesis(latents).float()
        reconstruction = images[:n], lpips_alex(images[:n]), _mse(images[:n], targets)
        if ball is None:
            return reconstruction
        with torch.no_grad():
            originals = G.synthesis(ball, noise_mode="none")
        return *reconstruction, lpips_alex.model(images[n:], originals).flatten(), _mse(images[n:], originals)

    forward = maybe_compile(forward, cfg.compile, cfg.cuda_graph)

    def loss_fn(step: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ball = (ball_latents(G, ws.detach(), at_step(ball_z, step)[0], alpha=cfg.alpha, psi=cfg.psi)
                if cfg.locality else None)
        images, lp, l2, *regulariser = forward(as_wplus(ws, G.n_latent), ball)
        if watch is not None:
            watch(int(step), images.detach())
        per_image = lp + cfg.l2_weight * l2
        logged = {"lpips": lp.mean(), "lpips_max": lp.max(), "mse": l2.mean()}
        stop_score = lp.detach()
        if lpips_stop is not None:
            with torch.no_grad():
                stop_score = lpips_stop(to_scoring_size(images.detach().float()))
                logged["lpips_stop_max"] = stop_score.max()
        if regulariser:
            reg_lpips, reg_l2 = regulariser
            per_image = per_image + cfg.locality_weight * (reg_lpips + cfg.locality_l2 * reg_l2).view(n, -1).mean(1)
            logged |= {"locality_lpips": reg_lpips.mean(), "locality_mse": reg_l2.mean()}
        if per_photo is None:
            return per_image.mean(), logged
        if cfg.early_stop is not None:
            per_photo.freeze(stop_score <= cfg.early_stop)
            logged["photos_tuning"] = (~per_photo.done).sum()
        return per_image.sum(), logged  # each photo's gradient is its batch-1 run's

    cancelled = projecting and len(pivot_losses.get("loss", ())) < cfg.project_steps  # progress said stop: no tuning
    if per_photo is not None:
        stop_when = (lambda v: v["photos_tuning"] == 0) if cfg.early_stop is not None else None
    else:
        stop_when = ((lambda v: v.get("lpips_stop_max", v["lpips_max"]) <= cfg.early_stop)
                     if cfg.early_stop is not None else None)
    tune_losses = run_adam(loss_fn, groups, 0 if cancelled else cfg.steps, stop_when=stop_when,
                           after_step=per_photo.restore if per_photo is not None else None,
                           progress=phase_progress(progress, "tune", total - cfg.steps, total),
                           cuda_graph=cfg.cuda_graph)
    finished = time.perf_counter()
    options = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in RUN_ONLY}
    options |= {"pivot": name if isinstance(name, str) else type(name).__name__, **cfg.projection}
    timings = {"pivot": pivot_seconds, "tune": finished - started - pivot_seconds, "total": finished - started}
    losses = {"pivot": pivot_losses, "tune": tune_losses}
    if per_photo is None:
        return InversionResult.create("pti", G, targets, pivot=ws, tuned=tuned, losses=losses, timings=timings,
                                      options=options)
    return [InversionResult.create("pti", G, targets[i : i + 1], pivot=ws[i : i + 1], delta=per_photo.delta(i),
                                   losses=losses, timings=timings, options=options | {"independent": n})
            for i in range(n)]
