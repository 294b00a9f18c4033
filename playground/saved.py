"""Long notebook runs kept on disk: a full-scale run takes hours on 2 CPU cores and a session can end mid-way, so each
finished inversion is saved under a key of everything it depends on, and re-executing the notebook redoes only what
is missing. Files are `InversionResult.save`'s safetensors (no pickle)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from core.inversion import InversionResult
from core.inversion.result import fingerprint
from core.nets.stylegan2 import Generator


def run_key(G: Generator, targets: torch.Tensor, settings: dict) -> str:
    """A short hash of the generator, the target photos and the run's settings (JSON; tensors by their bytes)."""
    digest = hashlib.sha256(fingerprint(G).encode())
    digest.update(targets.detach().float().cpu().numpy().tobytes())
    for name, value in sorted(settings.items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().float().cpu().numpy().tobytes())
        else:
            digest.update(json.dumps(value, sort_keys=True, default=repr).encode())
    return digest.hexdigest()[:16]


def saved_inversions(
    folder: str | Path | None,
    name: str,
    G: Generator,
    targets: torch.Tensor,
    settings: dict,
    compute: Callable[[], InversionResult | list[InversionResult]],
) -> list[InversionResult]:
    """compute()'s results (one or one per photo), loaded from `folder/name-KEY/` when an earlier run saved them with
    the same generator, targets and settings; folder None: always compute, save nothing."""
    if folder is None:
        results = compute()
        return results if isinstance(results, list) else [results]
    where = Path(folder) / f"{name}-{run_key(G, targets, settings)}"
    files = sorted(where.glob("*.safetensors"), key=lambda p: int(p.stem))
    if (where / "done").exists():
        return [InversionResult.load(f) for f in files]
    results = compute()
    results = results if isinstance(results, list) else [results]
    for i, result in enumerate(results):
        result.save(where / f"{i}.safetensors")
    (where / "done").write_text(json.dumps({"results": len(results)}))
    return results
