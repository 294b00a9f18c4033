"""One home for the files this project trains and writes: every kind declared once in `KINDS` (its format id, the
registry kinds whose names stand for it, what it is made for), one `write`, one `read`, and the one check that a
file was made for the generator (or encoder) it is used with. Readers elsewhere turn (tensors, metadata) into their
objects. Every file is safetensors with a string header: tensors and JSON, never a pickle.

    path = write("style.safetensors", "style", tensors, {"style": "sketch"}, made_for=generator_file)
    tensors, meta = read(path, "style", made_for=generator_file)   # refused, saying how to retrain, on another one
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe or not of the expected kind."""


@dataclass(frozen=True)
class Kind:
    format: str  # the header's "format"
    registry: tuple[str, ...] = ()  # registry kinds whose names stand for such a file
    made_for: str | None = None  # "generator" / "encoder": that file's sha256 is the header's "<made_for>_sha256"
    retrain: str = ""  # how to make one for another base: what a refusal says
    legacy_key: str | None = None  # files written before their format id are recognised by this header key


KINDS: dict[str, Kind] = {
    "generator": Kind("stylegan-playground/generator", ("generator",)),
    "encoder": Kind("stylegan-playground/encoder-v1", ("e4e", "psp", "style_transformer", "dualstylegan_encoder"),
                    "generator", "`python -m core train encoder` (models/face128/ENCODERS.md)"),
    "style": Kind("stylegan-playground/dualstylegan-style-v1", ("style",), "generator",
                  "`python -m core train dualstylegan` (models/face128/STYLES.md)"),
    "dualstylegan_stage2": Kind("stylegan-playground/dualstylegan-stage2-v1", ("dualstylegan_stage2",), "generator",
                                "`python -m core train dualstylegan --pretrained train` (models/face128/STYLES.md)"),
    "reference_edit": Kind("stylegan-playground/reference-edit-v1", ("reference_edit",), "encoder",
                           "`python -m core train reference-edit` (models/face128/REFERENCE_EDIT.md)"),
    "directions": Kind("stylegan-playground/directions-v1", ("directions",), legacy_key="directions"),
    "attributes": Kind("stylegan-playground/attributes-v1", ("attributes",), legacy_key="names"),
    "inversion": Kind("stylegan-playground/inversion"),
}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors(path: str | Path, *, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of any safetensors file; `tensors=False` reads the header only ({} for the tensors)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return (load_file(str(path)) if tensors else {}), meta
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def write(path: str | Path, kind: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str], *,
          made_for: str | Path | None = None, made_for_sha256: str | None = None) -> Path:
    """A `kind` file: the tensors (contiguous, on the CPU) and the metadata under the kind's format id; a kind made
    for a base records that base's sha256 (of the file `made_for`, or given as `made_for_sha256`)."""
    spec = KINDS[kind]
    header = {"format": spec.format, **metadata}
    if spec.made_for is not None:
        digest = made_for_sha256 or (sha256_of(made_for) if made_for is not None else None)
        if digest is None:
            raise ValueError(f"a {kind} file is made for a {spec.made_for}: pass made_for (its file) or its sha256")
        header[f"{spec.made_for}_sha256"] = digest
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=header)
    return path


def read(path: str | Path, kind: str, *, made_for: str | Path | None = None, tensors: bool = True
         ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a `kind` file, refused when it is another kind, or, with `made_for` (the base's file),
    when it was made for another base."""
    spec = KINDS[kind]
    loaded, meta = read_safetensors(path, tensors=tensors)
    legacy = spec.legacy_key is not None and "format" not in meta and spec.legacy_key in meta
    if meta.get("format") != spec.format and not legacy:
        raise CheckpointError(f"{path}: not a {spec.format} file (its header says format "
                              f"{meta.get('format')!r}; keys {sorted(meta)[:6]})")
    if made_for is not None:
        check_made_for(path, kind, meta, made_for)
    return loaded, meta


def check_made_for(path: str | Path, kind: str, meta: dict[str, str], base: str | Path) -> None:
    """Refuse a file made for another generator (or encoder) than `base`: another base is another latent space."""
    spec = KINDS[kind]
    expected, actual = meta.get(f"{spec.made_for}_sha256"), sha256_of(base)
    if expected != actual:
        made = f"sha256 {expected[:12]}…" if expected else "an unrecorded one"
        raise CheckpointError(f"{path} was made for another {spec.made_for} ({made}) than {base} "
                              f"({actual[:12]}…): retrain it for this one, {spec.retrain}")
