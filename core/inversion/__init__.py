"""Real photos into StyleGAN2: optimisation in W / W+ and Pivotal Tuning Inversion, one entry point and result type.

from core.inversion import invert
result = invert(G, "aligned.png", method="pti", locality=True)   # -> InversionResult
result.save("me.safetensors"); images = result.render(G)          # G itself is never modified
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from core.faces import ImageSource, pil_to_tensor
from core.inversion.optimise import Progress, fit_latents, project
from core.inversion.pti import PIVOTS, PRESETS, PTISettings, encoder_pivot, locality_drift, make_pivot, pivotal_tuning
from core.inversion.result import InversionResult
from core.nets.stylegan2 import Generator


@dataclass(frozen=True)
class MethodInfo:
    """An inversion method as users meet it; the CLI's choices and the app's buttons are read off `METHODS`."""

    label: str
    family: Literal["optimisation", "tuning", "encoder"]  # encoders need `encoder=` (the registry has one per model)
    summary: str


# The one table of inversion methods. A new one: an entry here and its branch in `invert`; the CLI (`python -m core
# invert --method`), the app's Invert / Compare tabs and the benchmarks list it from here.
METHODS: dict[str, MethodInfo] = {
    "w": MethodInfo("W", "optimisation", "the StyleGAN2 projector in W (Karras et al. 2020)"),
    "w+": MethodInfo("W+", "optimisation", "the projector in W+, one w per layer"),
    "psp": MethodInfo("pSp", "encoder", "one pass of a pSp encoder (Richardson et al. 2021)"),
    "e4e": MethodInfo("e4e", "encoder", "one pass of an e4e encoder: codes near W, edit well (Tov et al. 2021)"),
    "style_transformer": MethodInfo("Style Transformer", "encoder",
                                    "one pass of a Style Transformer encoder (Hu et al. 2022)"),
    "pti": MethodInfo("PTI", "tuning", "pivotal tuning: a pivot code, then the generator tuned to the photo "
                      "(Roich et al. 2022)"),
}
Method = str  # a key of METHODS
ENCODER_METHODS = tuple(name for name, info in METHODS.items() if info.family == "encoder")
# What the app offers: every method under its label, plus PTI settings worth a choice of their own.
CHOICES: dict[str, dict[str, object]] = {info.label: {"method": name} for name, info in METHODS.items()} | {
    "PTI + locality": {"method": "pti", "locality": True},
    "PTI (e4e pivot)": {"method": "pti", "pivot": "e4e"},
}
__all__ = [
    "invert",
    "encode",
    "METHODS",
    "MethodInfo",
    "CHOICES",
    "ENCODER_METHODS",
    "as_targets",
    "project",
    "pivotal_tuning",
    "PTISettings",
    "fit_latents",
    "make_pivot",
    "encoder_pivot",
    "locality_drift",
    "InversionResult",
    "Progress",
    "PIVOTS",
    "PRESETS",
    "Method",
]


def as_targets(images: ImageSource | torch.Tensor | Sequence[ImageSource | torch.Tensor], size: int) -> torch.Tensor:
    """Images (paths, PIL, arrays, or tensors [3, H, W] / [N, 3, H, W] in [-1, 1], or a list of them) as one batch
    [N, 3, size, size] in [-1, 1], resized (antialiased) when their size differs from the generator's."""
    items = images if isinstance(images, (list, tuple)) else [images]
    batch = []
    for item in items:
        tensor = item if isinstance(item, torch.Tensor) else pil_to_tensor(item)
        tensor = tensor.float().reshape(-1, *tensor.shape[-3:])
        if tensor.shape[-2:] != (size, size):
            tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        batch.append(tensor)
    return torch.cat(batch)


def invert(
    G: Generator,
    images: ImageSource | torch.Tensor | Sequence[ImageSource | torch.Tensor],
    method: Method = "w",
    *,
    progress: Progress | None = None,
    encoder: torch.nn.Module | None = None,
    preset: str = "paper",
    **options,
) -> InversionResult | list[InversionResult]:
    """Invert one aligned face (or several: batched W/W+, multi-ID PTI, or with `independent=True` independent PTI
    of each in one batched run, one result per photo) with G, which is left untouched.

    method 'psp' / 'e4e' / 'style_transformer': one forward pass of `encoder` (an `EncoderModel` from
    `core.registry.load_encoder`, whose decoder should be G); with method 'pti', `pivot='e4e'` (or 'psp') and
    `encoder=` make the encoder's code PTI's pivot.

    method 'w' / 'w+': the StyleGAN2 projector (options of `fit_latents`, default 1000 steps); 'pti': a pivot
    (default: 450 W-projection steps) then generator tuning (options of `pivotal_tuning`: pivot, steps,
    locality, ...), starting from the named `preset` of `PRESETS` ('paper' or 'fast'), which options override.
    progress(step, total, losses) is called after every step; returning False stops early.
    """
    if preset not in PRESETS or (preset != "paper" and method != "pti"):
        raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}, with method 'pti'; "
                         f"not {preset!r} with {method!r}")
    targets = as_targets(images, G.size).to(next(G.parameters()).device)
    if method in ("w", "w+"):
        return project(G, targets, space=method, progress=progress, **options)
    if method == "pti":
        watch = options.pop("watch", None)  # sees every tuning step's images: not a setting
        settings = PRESETS[preset].replace(**options)
        pivot = settings.pivot
        if isinstance(pivot, str) and pivot in ENCODER_METHODS:  # an encoder's code as the pivot (PTI's e4e option)
            if encoder is None:
                raise ValueError(f"pivot {pivot!r} needs encoder=... "
                                 "(e.g. core.registry.load_encoder('face128-v2-e4e'))")
            settings = settings.replace(pivot=encoder_pivot(encoder, size=encoder.encoder.input_size))
        result = pivotal_tuning(G, targets, settings, progress=progress, watch=watch)
        for each in result if isinstance(result, list) else [result]:
            each.options |= {"preset": preset} | ({"pivot": pivot} if isinstance(pivot, str) else {})
        return result
    if method in ENCODER_METHODS:
        if encoder is None:
            raise ValueError(f"method {method!r} needs encoder=... (e.g. core.registry.load_encoder('e4e-ffhq'))")
        return encode(G, encoder, targets, method=method)
    raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; not {method!r}")


def encode(
    G: Generator, encoder: torch.nn.Module, targets: torch.Tensor, *, method: str = "encoder"
) -> InversionResult:
    """Encoder inversion: targets [N, 3, H, W] -> W+ in one forward pass, rendered by G (the encoder's decoder)."""
    started = time.perf_counter()
    with torch.no_grad():
        ws = encoder_pivot(encoder, size=encoder.encoder.input_size)(targets)
    if ws.shape[1:] != (G.n_latent, G.style_dim):
        raise ValueError(f"the encoder gives codes {tuple(ws.shape[1:])}, G expects ({G.n_latent}, {G.style_dim})")
    seconds = time.perf_counter() - started
    return InversionResult.create(
        method,
        G,
        targets,
        pivot=ws,
        losses={},
        timings={"encode": seconds, "total": seconds},
        options={"encoder": type(encoder.encoder).__name__},
    )
