"""The shipped files: a finished stage II (every style starts from it) and a style (`core.style` loads it).

Both hold the extrinsic path as int8 matrices with per-row float16 scales (the rest float16) and, in the metadata,
the base generator's sha256 and `res_index`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from core import artifacts
from core.artifacts import KINDS
from core.nets.ops import dequantise_int8, quantise_int8
from core.registry import resolve, resolve_kind
from core.training.dualstylegan.config import DualStyleGANConfig, stage2_file
from core.training.scaffold import full, read_parts


def int8_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Matrices as int8 with per-row float16 scales, the rest float16: what a shipped extrinsic path stores."""
    tensors = {}
    for key, value in full(dequantise_int8(state)).items():
        if value.ndim >= 2:
            tensors[key], tensors[f"{key}.scale"] = quantise_int8(value)
        else:
            tensors[key] = value.half()
    return tensors


def export_stage2(folder: str | Path, path: str | Path) -> Path:
    """A finished stage II (`pretrain/` folder) as one shipped file: the int8 extrinsic path and, in the metadata,
    the base generator's sha256, `res_index` and the kimg it trained."""
    compact = Path(folder) / "compact"
    meta = json.loads((compact / "meta.json").read_text())
    info = {"res_index": str(meta["config"]["res_index"]), "kimg": str(round(meta["nimg"] / 1000, 1)),
            "config": json.dumps(meta["config"])}
    return artifacts.write(path, "dualstylegan_stage2", int8_state(read_parts(compact, "extrinsic")), info,
                           made_for_sha256=meta["generator_sha256"])


def read_stage2(name_or_path: str, generator: str) -> dict[str, torch.Tensor]:
    """A shipped stage II's extrinsic weights, refused with "retrain" when it was made for another generator."""
    path = resolve_kind(name_or_path, KINDS["dualstylegan_stage2"].registry)
    tensors, _ = artifacts.read(path, "dualstylegan_stage2", made_for=resolve(generator))
    return full(dequantise_int8(tensors))


def stage2_kimg(cfg: DualStyleGANConfig) -> float:
    """How long the stage II a style started from trained: a shipped file says so in its metadata."""
    if (file := stage2_file(cfg)) is None:
        return cfg.pretrain_kimg
    path = resolve_kind(file, KINDS["dualstylegan_stage2"].registry)
    return float(artifacts.read(path, "dualstylegan_stage2", tensors=False)[1]["kimg"])


def export_style(out: str | Path, path: str | Path) -> Path:
    """One file per style: the trained extrinsic path, the exemplars' extrinsic and intrinsic Z+ codes (float16),
    their file names, and in the metadata the base generator's sha256, `res_index`, how the style images were
    aligned and how long each phase trained."""
    out = Path(out)
    meta = json.loads((out / "style" / "compact" / "meta.json").read_text())
    cfg = meta["config"]
    tensors = int8_state(read_parts(out / "style" / "compact", "extrinsic"))
    codes = load_file(str(out / "codes.safetensors"))
    with np.load(out / "styles.npz") as saved:
        names, aligned = [str(n) for n in saved["names"]], saved["aligned"].tolist()
    tensors["exemplars.extrinsic"] = codes["extrinsic"].half()
    tensors["exemplars.intrinsic"] = codes["intrinsic"].half()
    info = {"style": cfg["name"] or Path(cfg["styles"]).name, "res_index": str(cfg["res_index"]),
            "exemplars": json.dumps(names), "aligned_by_landmarks": str(sum(aligned)),
            "kimg": json.dumps({"finetune": cfg["finetune_kimg"], "pretrain": stage2_kimg(DualStyleGANConfig(**cfg)),
                                "style": round(meta["nimg"] / 1000, 1)})}
    return artifacts.write(path, "style", tensors, info, made_for_sha256=meta["generator_sha256"])
