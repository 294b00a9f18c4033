"""`InversionResult`: what any inversion returns, and how it is saved without a generator copy per photo."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core import artifacts
from core.measures import lpips_distance, mse
from core.nets.stylegan2 import Generator


def fingerprint(G: Generator) -> str:
    """A short exact id of G's config and weights (first values of every tensor), equal on every device."""
    digest = hashlib.blake2b(json.dumps(G.config, sort_keys=True).encode(), digest_size=12)
    heads = torch.cat([t.detach().flatten()[:16].float().cpu() for t in G.state_dict().values()])
    digest.update(heads.numpy().tobytes())
    return digest.hexdigest()


def weight_delta(base: Generator, tuned: Generator) -> dict[str, torch.Tensor]:
    """tuned - base for every state-dict tensor that changed, as float16 on the CPU."""
    original = base.state_dict()
    return {
        name: (value.detach().float() - original[name].float()).half().cpu()
        for name, value in tuned.state_dict().items()
        if not torch.equal(value, original[name])
    }


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v) for k, v in options.items()}


@dataclass(repr=False)
class InversionResult:
    """A photo (or N photos) inverted: the pivot latent, the generator change, the reconstruction and the run's log.

    The tuned generator is kept as a *weight delta* against the base generator: only the tensors that changed
    (PTI tunes the synthesis network; the mapping network never changes), as float16 differences, so the base
    plus the delta reproduces the tuned weights to ~1e-3 of the change itself. On disk, per tuned photo (or per
    multi-ID group): the embedded 128 px model (channel_base 8192, channel_max 256: 6.5 M synthesis weights)
    costs 13 MB; the 1024 px config-f (28.3 M synthesis weights) 57 MB, against the 127 MB float32 generator
    pickle PTI's official code writes for every photo. W / W+ results have no delta but keep their optimised
    noise maps (float16: 0.09 MB at 128 px, 5.6 MB at 1024 px).

    pivot: W [N, D] or W+ [N, n_latent, D]; noise: per-layer maps [N, 1, h, w] or None (the generator's stored
    noise); reconstruction: [N, 3, H, W] in [-1, 1], rendered from exactly what `render(base)` rebuilds.
    losses: {phase: {name: value per step}}; timings: seconds per phase; measures: per-image `lpips` (alex) and
    `mse` (on [0, 1]) against the targets, plus whatever a caller adds, per image too (`core.measures.score_each`).
    """

    method: str
    pivot: torch.Tensor
    reconstruction: torch.Tensor
    delta: dict[str, torch.Tensor] = field(default_factory=dict)
    noise: list[torch.Tensor] | None = None
    losses: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    _tuned: tuple[int, str, Generator] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        method: str,
        base: Generator,
        targets: torch.Tensor,
        *,
        pivot: torch.Tensor,
        tuned: Generator | None = None,
        delta: dict[str, torch.Tensor] | None = None,
        noise: list[torch.Tensor] | None = None,
        losses: dict[str, dict[str, list[float]]],
        timings: dict[str, float],
        options: dict[str, Any],
    ) -> InversionResult:
        """Package a finished run: stores the delta (of `tuned`, or given) and noise at their saved precision and
        renders from them."""
        result = cls(
            method=method,
            pivot=pivot.detach().float().cpu(),
            reconstruction=torch.empty(0),
            delta=weight_delta(base, tuned) if tuned is not None else (delta or {}),
            noise=[maps.detach().half().cpu() for maps in noise] if noise is not None else None,
            losses=losses,
            timings=timings,
            options=_jsonable(options),
            base={"config": base.config, "fingerprint": fingerprint(base)},
        )
        result.reconstruction = result.render(base)
        rec, tgt = result.reconstruction, targets.detach().float().cpu()
        with torch.no_grad():
            result.measures = {"lpips": lpips_distance(rec, tgt).tolist(), "mse": mse(rec, tgt).tolist()}
        return result

    # -- using it ------------------------------------------------------------------------------------

    def generator(self, base: Generator) -> Generator:
        """The tuned generator: a copy of `base` (the generator this result was made with, not modified) plus the
        delta, built once and kept (shared: do not modify it), so rendering edit after edit costs one synthesis each,
        not a generator copy."""
        key = fingerprint(base)
        if key != self.base["fingerprint"]:
            raise ValueError(
                f"this {self.method} result was made with another generator (config {self.base['config']}); "
                "pass the same base generator it was inverted with"
            )
        if self._tuned is None or self._tuned[:2] != (id(base), key):
            tuned = copy.deepcopy(base)
            tensors = tuned.state_dict()
            with torch.no_grad():
                for name, change in self.delta.items():
                    tensors[name].add_(change.to(tensors[name].device, torch.float32))
            self._tuned = (id(base), key, tuned.eval().requires_grad_(False))
        return self._tuned[2]

    @torch.no_grad()
    def render(self, base: Generator, ws: torch.Tensor | None = None, *, tuned: bool = True) -> torch.Tensor:
        """Images [N, 3, H, W] (CPU) of `ws` (default: the pivot; e.g. an edited pivot) with this result's noise,
        drawn by the tuned generator, or by `base` itself with tuned=False (the "before PTI" view)."""
        G = self.generator(base) if tuned and self.delta else base
        device = next(G.parameters()).device
        ws = (self.pivot if ws is None else ws).to(device)
        noise = [maps.to(device, torch.float32) for maps in self.noise] if self.noise is not None else None
        return G.synthesis(ws, noise_mode="const", noise=noise).float().cpu()

    def measure(self, targets: torch.Tensor) -> dict[str, list[float]]:
        """Every measure of `core.measures.score_each` against the targets, per image, kept in `measures`: LPIPS and
        MSE, scored when the result was made, are not scored again."""
        from core.measures import score_each

        self.measures = score_each(self.reconstruction, targets, skip=self.measures) | self.measures
        return self.measures

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data `save` writes (the JSON log adds a little)."""
        tensors = [self.pivot, self.reconstruction.half(), *self.delta.values(), *(self.noise or [])]
        return sum(t.numel() * t.element_size() for t in tensors)

    def __repr__(self) -> str:
        lpips = ", ".join(f"{v:.3f}" for v in self.measures.get("lpips", []))
        return (
            f"InversionResult(method={self.method!r}, pivot={tuple(self.pivot.shape)}, "
            f"changed tensors={len(self.delta)}, {self.nbytes / 1e6:.1f} MB, lpips=[{lpips}], "
            f"seconds={self.timings.get('total', float('nan')):.1f})"
        )

    # -- files ---------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """One safetensors file: pivot, reconstruction (float16), delta, noise; the rest as JSON in its metadata."""
        path = Path(path)
        tensors = {"pivot": self.pivot, "reconstruction": self.reconstruction.half()}
        tensors |= {f"delta/{name}": change for name, change in self.delta.items()}
        tensors |= {f"noise/{i}": maps for i, maps in enumerate(self.noise or [])}
        log = {
            "method": self.method, "has_noise": self.noise is not None, "losses": self.losses,
            "timings": self.timings, "measures": self.measures, "options": self.options, "base": self.base,
        }
        return artifacts.write(path, "inversion", tensors, {"result": json.dumps(log)})

    @classmethod
    def load(cls, path: str | Path) -> InversionResult:
        tensors, meta = artifacts.read(path, "inversion")
        log = json.loads(meta["result"])
        noise_keys = sorted((k for k in tensors if k.startswith("noise/")), key=lambda k: int(k.split("/")[1]))
        return cls(
            method=log["method"],
            pivot=tensors["pivot"],
            reconstruction=tensors["reconstruction"].float(),
            delta={k.removeprefix("delta/"): v for k, v in tensors.items() if k.startswith("delta/")},
            noise=[tensors[k] for k in noise_keys] if log["has_noise"] else None,
            losses=log["losses"],
            timings=log["timings"],
            measures=log.get("measures", log.get("metrics", {})),  # files written before the rename say "metrics"
            options=log["options"],
            base=log["base"],
        )
