"""StyleGAN playground core: invert real face photos into StyleGAN2, edit and restyle them.

The public API is a dozen names, imported lazily so that `import core` stays cheap (dlib, LPIPS and the
encoders load only when first used):

    photo --faces--> aligned crop --inversion--> latent (+ tuned G) --editing--> image,  measures score each step
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Playground": "core.pipeline",
    "Generator": "core.nets.stylegan2",
    "load_generator": "core.registry",
    "available": "core.registry",
    "CheckpointError": "core.artifacts",
    "save_generator": "core.checkpoints",
    "load_image": "core.faces",
    "align_face": "core.faces",
    "NoFaceFound": "core.faces",
    "ImageError": "core.faces",
    "score": "core.measures",
    "lpips_distance": "core.measures",
    "invert": "core.inversion",
    "InversionResult": "core.inversion",
    "load_encoder": "core.registry",
    "load_style": "core.style",
    "stylize": "core.style",
    "Direction": "core.editing",
    "apply": "core.editing",
    "apply_sequence": "core.editing",
    "ganspace": "core.editing",
    "sefa": "core.editing",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return __all__
